package lan.planetary.apptest;

import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import lan.planetary.Node;
import lan.planetary.NodeListener;

/**
 * What an Android app does with the Java API, on a desktop JVM: the TUN descriptor comes from
 * outside (here: {@code with_tun.py}, standing in for {@code VpnService.establish()}), the
 * interface gets the node's address before the node starts, {@code Node.start(fd)} hands the
 * descriptor over, and ordinary programs (ping) reach the mesh through it. No packet crosses
 * into the JVM: there is no packet listener in descriptor mode.
 *
 * <p>{@code java lan.planetary.apptest.TunApp <config json> <address to ping>}, with {@code
 * PL_TUN_FD} set. Prints {@code PING OK} on success.
 */
public final class TunApp {
    public static void main(String[] args) throws Exception {
        int fd = Integer.parseInt(System.getenv("PL_TUN_FD"));
        CountDownLatch up = new CountDownLatch(1);
        try (Node node = Node.create(args[0], new NodeListener() {
            @Override
            public void onPeerUp(String publicKey, String address) {
                up.countDown();
            }
        })) {
            // Known before start: the VPN interface is described first (VpnService.Builder).
            String address = node.address();
            run("ip", "link", "set", "dev", "pltun0", "mtu", "1280", "up");
            run("ip", "-6", "addr", "add", address + "/7", "dev", "pltun0", "nodad");
            node.start(fd);
            if (!up.await(10, TimeUnit.SECONDS)) {
                throw new IllegalStateException("no peer came up: " + node.peers());
            }
            int rc = 1;
            for (int attempt = 0; attempt < 5 && rc != 0; attempt++) {
                rc = run("ping", "-6", "-n", "-c", "3", "-i", "0.2", "-W", "2", args[1]);
            }
            if (rc != 0) {
                throw new IllegalStateException("ping failed; peers: " + node.peers());
            }
            long rx = node.status().getCounters().getOrDefault("counters.rx_datagrams", 0L);
            System.out.println("PING OK (" + rx + " datagrams received by the node)");
            node.stop();
        }
    }

    private static int run(String... cmd) throws Exception {
        return new ProcessBuilder(cmd).inheritIO().start().waitFor();
    }
}
