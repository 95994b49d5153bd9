package lan.planetary.tests;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.logging.LogRecord;
import java.util.stream.Stream;
import lan.planetary.Config;
import lan.planetary.Node;
import lan.planetary.NodeListener;
import lan.planetary.NodeStatus;
import lan.planetary.Peer;
import lan.planetary.PlanetaryException;
import lan.planetary.PlanetaryException.Code;
import lan.planetary.SocketProtector;

/**
 * The Java API on a real JVM (run by mobile-ffi/tests/jvm.rs under -Xcheck:jni):
 * {@code java lan.planetary.tests.JvmTests <scratch dir> [section...]}. Exits non-zero on the
 * first failure.
 */
public final class JvmTests {
    private static Path scratch;
    private static int dirs;

    public static void main(String[] args) throws Exception {
        scratch = Paths.get(args[0]);
        List<String> only = Arrays.asList(args).subList(1, args.length);
        System.out.println("library " + Node.version());
        run(only, "echo", JvmTests::twoNodesExchangeAnEcho);
        run(only, "bad_calls", JvmTests::badCalls);
        run(only, "callbacks", JvmTests::callbacksMisbehave);
        run(only, "cycles", JvmTests::startStopCycles);
        run(only, "protect", JvmTests::socketProtectionAndNetworkChanges);
        System.out.println("all passed");
    }

    interface Section {
        void run() throws Exception;
    }

    private static void run(List<String> only, String name, Section s) throws Exception {
        if (!only.isEmpty() && !only.contains(name)) {
            return;
        }
        long t0 = System.nanoTime();
        s.run();
        System.out.printf("ok %s (%d ms)%n", name, (System.nanoTime() - t0) / 1_000_000);
    }

    static String stateDir(String label) throws IOException {
        Path d = scratch.resolve(label + "-" + (dirs++));
        Files.createDirectories(d);
        return d.toAbsolutePath().toString();
    }

    static Config config(String dir) {
        return new Config(dir).listen("udp://127.0.0.1:0").logLevel("debug").mtu(1280);
    }

    static int port(Node n) {
        String l = n.status().getListen().get(0);
        return Integer.parseInt(l.substring(l.lastIndexOf(':') + 1));
    }

    // ---------------------------------------------------------------------------------------

    /** Two nodes in packet mode over loopback: an echo request from A to B, B's reply to A. */
    static void twoNodesExchangeAnEcho() throws Exception {
        Recorder ra = new Recorder();
        Recorder rb = new Recorder();
        try (Node b = Node.create(config(stateDir("b")), rb)) {
            b.startPacketMode(rb);
            int bPort = port(b);
            String peerUri = "udp://127.0.0.1:" + bPort;
            try (Node a = Node.create(config(stateDir("a")).peer(peerUri), ra)) {
                String aa = a.address();
                String ab = b.address();
                Check.equal(64, a.publicKey().length(), "public key length");
                a.startPacketMode(ra);

                // Events: ready first (before start returned), then peer_up on both sides.
                Check.equal("ready", ra.events().get(0).kind, "A's first event");
                Check.equal(aa, ra.events().get(0).a, "ready's address");
                Check.equal(a.publicKey(), ra.events().get(0).b, "ready's public key");
                Recorder.Event up = ra.await(5000, "peer_up on A", e -> e.kind.equals("peer_up"));
                Check.equal(b.publicKey(), up.a, "peer_up's key");
                Check.equal(ab, up.b, "peer_up's address");
                Check.equal("planetary-node", up.thread, "callback thread");
                rb.await(5000, "peer_up on B", e -> e.kind.equals("peer_up") && aa.equals(e.b));
                synchronized (ra.logs) {
                    Check.that(ra.logs.stream().anyMatch(l -> l.contains("packet mode")), "A's log lines");
                }

                // A -> B: an echo request; B's "stack" answers; B -> A: the reply.
                byte[] payload = "planetary over JNI".getBytes(StandardCharsets.UTF_8);
                byte[] srcA = Icmp.address(aa);
                byte[] srcB = Icmp.address(ab);
                boolean replied = false;
                for (int seq = 1; seq <= 20 && !replied; seq++) {
                    final int s = seq;
                    Check.that(a.sendPacket(Icmp.echo(Icmp.REQUEST, srcA, srcB, 7, seq, payload)), "queued");
                    byte[] req = rb.takePacket(500, p -> Icmp.isEcho(p, Icmp.REQUEST, s));
                    if (req == null) {
                        continue;
                    }
                    Check.that(Arrays.equals(srcA, Icmp.src(req)), "request's source");
                    Check.that(Arrays.equals(srcB, Icmp.dst(req)), "request's destination");
                    // The (array, offset, length) form, from the middle of a bigger buffer.
                    byte[] reply = Icmp.echo(Icmp.REPLY, srcB, srcA, 7, seq, payload);
                    byte[] buf = new byte[reply.length + 20];
                    System.arraycopy(reply, 0, buf, 10, reply.length);
                    Check.that(b.sendPacket(buf, 10, reply.length), "queued");
                    byte[] got = ra.takePacket(2000, p -> Icmp.isEcho(p, Icmp.REPLY, s));
                    Check.that(got != null, "B's reply never reached A's PacketListener");
                    Check.that(Arrays.equals(srcB, Icmp.src(got)), "reply's source");
                    byte[] tail = Arrays.copyOfRange(got, got.length - payload.length, got.length);
                    Check.that(Arrays.equals(payload, tail), "reply's payload");
                    replied = true;
                }
                Check.that(replied, "no echo request reached B's PacketListener");

                // Status and peers, as objects.
                NodeStatus st = a.status();
                Check.equal(aa, st.getAddress(), "status address");
                Check.equal(a.publicKey(), st.getPublicKey(), "status key");
                Check.equal(1, st.getPeersUp(), "peers up");
                Check.equal(1, st.getPeersConfigured(), "peers configured");
                Check.equal(1280, st.getMtu(), "mtu");
                Check.equal(Node.version(), st.getVersion(), "version");
                Check.that(st.getListen().get(0).startsWith("udp://127.0.0.1:"), "listen " + st.getListen());
                Check.that(st.counter("counters.rx_datagrams") > 0, "rx_datagrams in " + st.getCounters());
                Check.that(st.counter("counters.handshakes_completed") >= 1, "handshakes");
                List<Peer> ps = a.peers();
                Check.equal(1, ps.size(), "A's peers: " + ps);
                Peer p = ps.get(0);
                Check.that(p.isUp(), "peer up: " + p);
                Check.equal("up", p.getState(), "state");
                Check.equal(ab, p.getAddress(), "peer address");
                Check.equal(b.publicKey(), p.getPublicKey(), "peer key");
                Check.equal(peerUri, p.getUri(), "peer uri");
                Check.that(p.getTxPackets() >= 1 && p.getRxPackets() >= 1, "peer packets " + p);
                Check.that(p.getUpSeconds() != null && p.getLastHandshakeSeconds() != null, "peer times");
                Check.that(!p.getPaths().isEmpty(), "peer paths");
                Check.throwsA(UnsupportedOperationException.class, "peers() is read-only", () -> ps.clear());

                // Runtime peers: remove (link down), add back (up), twice is refused.
                a.removePeer(peerUri);
                ra.await(5000, "peer_down", e -> e.kind.equals("peer_down"));
                a.addPeer(peerUri);
                Check.eventually(5000, "second peer_up", () -> ra.count("peer_up") == 2);
                PlanetaryException twice = Check.throwsA(PlanetaryException.class, "add twice", () -> a.addPeer(peerUri));
                Check.equal(Code.REFUSED, twice.getCode(), "code");
                Check.mentions(twice, "already a peer");

                // What one status() costs, seen from Java (median of 1,000 calls).
                statusCost(a);

                // Stop: onStopped(null); B sees the link go down.
                a.stop();
                Check.equal("stopped", ra.last().kind, "A's last event");
                Check.equal(null, ra.last().a, "stopped's error");
                rb.await(3000, "peer_down on B", e -> e.kind.equals("peer_down"));
            }
        }
    }

    static void statusCost(Node n) {
        for (int i = 0; i < 200; i++) {
            n.status();
        }
        long[] t = new long[1000];
        for (int i = 0; i < t.length; i++) {
            long t0 = System.nanoTime();
            n.status();
            t[i] = System.nanoTime() - t0;
        }
        Arrays.sort(t);
        long[] p = new long[3];
        for (int i = 0; i < 3; i++) {
            p[i] = t[new int[] {500, 900, 990}[i]];
        }
        System.out.printf("status() from Java: median %.1f us, p90 %.1f us, p99 %.1f us (1000 calls)%n",
                p[0] / 1e3, p[1] / 1e3, p[2] / 1e3);
        long[] q = new long[1000];
        for (int i = 0; i < q.length; i++) {
            long t0 = System.nanoTime();
            n.peers();
            q[i] = System.nanoTime() - t0;
        }
        Arrays.sort(q);
        System.out.printf("peers() from Java: median %.1f us (1000 calls)%n", q[500] / 1e3);
    }

    // ---------------------------------------------------------------------------------------

    static PlanetaryException planetary(Code code, String part, Check.ThrowingRunnable body) {
        PlanetaryException e = Check.throwsA(PlanetaryException.class, part, body);
        Check.equal(code, e.getCode(), "code of <" + e.getMessage() + ">");
        Check.equal(code.value(), e.getRawCode(), "raw code");
        Check.mentions(e, part);
        Check.mentions(e, code.cName());
        return e;
    }

    static void npe(String part, Check.ThrowingRunnable body) {
        Check.mentions(Check.throwsA(NullPointerException.class, part, body), part);
    }

    /** Each wrong call gives its exception and message; the JVM lives on. */
    static void badCalls() throws Exception {
        String dir = stateDir("bad");
        NodeListener quiet = new NodeListener() {};
        npe("configJson", () -> Node.create((String) null, quiet));
        npe("config", () -> Node.create((Config) null, quiet));
        npe("listener", () -> Node.create(config(dir).toJson(), null));
        planetary(Code.INVALID_ARGUMENT, "not valid JSON", () -> Node.create("{", quiet));
        planetary(Code.INVALID_ARGUMENT, "JSON object", () -> Node.create("[]", quiet));
        planetary(Code.INVALID_ARGUMENT, "state_dir", () -> Node.create("{}", quiet));
        planetary(Code.INVALID_ARGUMENT, "bogus", () -> Node.create("{\"state_dir\":\"" + dir + "\",\"bogus\":1}", quiet));
        planetary(Code.INVALID_ARGUMENT, "tun.mtu", () -> Node.create("{\"state_dir\":\"" + dir + "\",\"tun\":{\"mtu\":\"big\"}}", quiet));
        planetary(Code.INVALID_ARGUMENT, "configJson", () -> Node.create("{\"state_dir\":\"" + dir + "\",\"admin_socket\":\"/x\"}", quiet));

        Node n = Node.create(config(dir), quiet);
        // A second node on the same state_dir is refused.
        planetary(Code.INVALID_ARGUMENT, "in use", () -> Node.create(config(dir), quiet));
        npe("packet listener", () -> n.startPacketMode(null));
        npe("packet", () -> n.sendPacket(null));
        npe("uri", () -> n.addPeer(null));
        planetary(Code.NOT_RUNNING, "Node.start", () -> n.sendPacket(new byte[] {0x60, 0, 0, 0}));
        planetary(Code.NOT_RUNNING, "not running", () -> n.status());
        planetary(Code.NOT_RUNNING, "not running", () -> n.peers());
        planetary(Code.NOT_RUNNING, "not running", () -> n.stop());
        planetary(Code.BAD_DESCRIPTOR, "descriptor", () -> n.start(-1));
        planetary(Code.BAD_DESCRIPTOR, "descriptor", () -> n.start(987654));

        Recorder r = new Recorder();
        n.startPacketMode(r);
        planetary(Code.ALREADY_RUNNING, "running already", () -> n.startPacketMode(r));
        planetary(Code.ALREADY_RUNNING, "running already", () -> n.start(0));
        planetary(Code.INVALID_ARGUMENT, "not an IPv6 packet", () -> n.sendPacket(new byte[] {0x45, 0, 0, 20}));
        planetary(Code.INVALID_ARGUMENT, "not an IPv6 packet", () -> n.sendPacket(new byte[0]));
        planetary(Code.INVALID_ARGUMENT, "exceeds the MTU 1280", () -> n.sendPacket(new byte[1281]));
        byte[] huge = new byte[1 << 20];
        huge[0] = 0x60;
        planetary(Code.INVALID_ARGUMENT, "exceeds the MTU", () -> n.sendPacket(huge));
        Check.throwsA(IndexOutOfBoundsException.class, "offset", () -> n.sendPacket(new byte[10], -1, 5));
        Check.throwsA(IndexOutOfBoundsException.class, "length", () -> n.sendPacket(new byte[10], 8, 5));
        // Garbage that starts like IPv6 is the node's to drop, as on a real interface.
        byte[] junk = new byte[200];
        new java.util.Random(1).nextBytes(junk);
        junk[0] = 0x6f;
        for (int i = 0; i < 100; i++) {
            Check.that(n.sendPacket(junk), "junk queued");
        }
        planetary(Code.INVALID_ARGUMENT, "uri", () -> n.addPeer("nope"));
        planetary(Code.INVALID_ARGUMENT, "uri", () -> n.removePeer("ftp://x"));
        planetary(Code.REFUSED, "", () -> n.removePeer("udp://127.0.0.1:9"));
        Check.that(n.status().getAddress().equals(n.address()), "still answers");
        n.stop();

        // Close: then every call says so; close again does nothing.
        n.close();
        Check.that(n.isClosed(), "isClosed");
        n.close();
        planetary(Code.INVALID_HANDLE, "closed", () -> n.address());
        planetary(Code.INVALID_HANDLE, "closed", () -> n.startPacketMode(r));
        planetary(Code.INVALID_HANDLE, "closed", () -> n.sendPacket(new byte[] {0x60}));
        planetary(Code.INVALID_HANDLE, "closed", () -> n.status());
        planetary(Code.INVALID_HANDLE, "closed", () -> n.stop());
        // The state directory is free again.
        Node.create(config(dir), quiet).close();
        // Closing a running node stops it.
        Recorder r2 = new Recorder();
        Node m = Node.create(config(dir), r2);
        m.startPacketMode(r2);
        m.close();
        Check.equal("stopped", r2.last().kind, "close stops");
    }

    // ---------------------------------------------------------------------------------------

    /** Listeners that call back in, or throw. */
    static void callbacksMisbehave() throws Exception {
        try (CapturedLog captured = new CapturedLog()) {
            List<LogRecord> warnings = captured.records;
            AtomicReference<Node> self = new AtomicReference<>();
            List<Throwable> inside = Collections.synchronizedList(new ArrayList<>());
            AtomicInteger packetsSeen = new AtomicInteger();
            Recorder rec = new Recorder() {
                @Override
                public void onReady(String address, String publicKey) {
                    super.onReady(address, publicKey);
                    Node n = self.get();
                    // Calls that wait for a node: refused, not a deadlock.
                    for (Check.ThrowingRunnable call : new Check.ThrowingRunnable[] {
                        n::status, n::peers, n::stop, n::close, () -> n.addPeer("udp://127.0.0.1:9"),
                        () -> n.startPacketMode(this),
                    }) {
                        try {
                            call.run();
                            inside.add(new AssertionError("a call inside onReady returned"));
                        } catch (Throwable t) {
                            inside.add(t);
                        }
                    }
                    // Calls that do not wait work.
                    inside.add(new RuntimeException("address " + n.address()));
                    throw new IllegalStateException("a listener that throws");
                }

                @Override
                public void onPacket(byte[] packet) {
                    packetsSeen.incrementAndGet();
                    throw new RuntimeException("a packet listener that throws");
                }
            };
            Node n = Node.create(config(stateDir("cb")), rec);
            self.set(n);
            n.startPacketMode(rec);
            Check.equal(7, inside.size(), "calls made inside onReady: " + inside);
            for (int i = 0; i < 6; i++) {
                Throwable t = inside.get(i);
                Check.that(t instanceof PlanetaryException, "inside onReady: " + t);
                Check.equal(Code.WRONG_THREAD, ((PlanetaryException) t).getCode(), "code of " + t);
                Check.mentions(t, "inside a node's callback");
            }
            Check.mentions(inside.get(6), n.address());
            Check.that(!n.isClosed(), "close inside a callback did not close");
            Check.that(warnings.stream().anyMatch(w -> w.getThrown() instanceof IllegalStateException),
                    "the listener's exception was logged: " + warnings);
            // The node still works after its listener threw.
            Check.equal(n.address(), n.status().getAddress(), "status after a throwing listener");
            n.stop();
            Check.equal("stopped", rec.last().kind, "stopped after a throwing listener");
            n.close();
        }
    }

    // ---------------------------------------------------------------------------------------

    /**
     * The fewest entries {@code dir} had over half a second (ten looks): the JVM starts and
     * ends threads of its own now and then (one was seen at a baseline once, under load), which
     * a single look would count.
     */
    static long settled(String dir) throws IOException, InterruptedException {
        long least = Long.MAX_VALUE;
        for (int i = 0; i < 10; i++) {
            least = Math.min(least, count(dir));
            Thread.sleep(50);
        }
        return least;
    }

    static long count(String dir) throws IOException {
        try (Stream<Path> s = Files.list(Paths.get(dir))) {
            return s.count();
        }
    }

    static long nodeThreads() throws IOException {
        long n = 0;
        try (Stream<Path> s = Files.list(Paths.get("/proc/self/task"))) {
            for (Path t : (Iterable<Path>) s::iterator) {
                try {
                    n += Files.readString(t.resolve("comm")).trim().equals("planetary-node") ? 1 : 0;
                } catch (IOException gone) {
                    // The thread ended meanwhile.
                }
            }
        }
        return n;
    }

    static long rssKiB() throws IOException {
        for (String l : Files.readAllLines(Paths.get("/proc/self/status"))) {
            if (l.startsWith("VmRSS:")) {
                return Long.parseLong(l.replaceAll("[^0-9]", ""));
            }
        }
        throw new AssertionError("no VmRSS");
    }

    static String usage() throws IOException {
        return String.format("tasks %d (planetary-node %d), fds %d, RSS %d KiB, JVM threads %d",
                count("/proc/self/task"), nodeThreads(), count("/proc/self/fd"), rssKiB(),
                ManagementFactory.getThreadMXBean().getThreadCount());
    }

    /** With -Dnmt (and -XX:NativeMemoryTracking=summary): the JVM's own account of its memory. */
    static void nmt(String what) throws Exception {
        if (System.getProperty("nmt") == null) {
            return;
        }
        String pid = Long.toString(ProcessHandle.current().pid());
        Process p = new ProcessBuilder("jcmd", pid, "VM.native_memory", what).inheritIO().start();
        p.waitFor();
    }

    /** 100 start/stop cycles (after 50 of warm-up): no thread, descriptor or memory left behind. */
    static void startStopCycles() throws Exception {
        // Run without the JIT (-Xint, from jvm.rs): with it, RSS takes one step of 3 to 6 MiB at
        // an unpredictable cycle within the first few hundred (the JIT's compilations: code
        // cache and compiler arenas; gone with -Xint), which says nothing of the library.
        // Without it (release build): the 100 cycles after 50 of warm-up added 0.8, 0.8 and 2.2
        // MiB in three runs, all of it in their first half (the allocator still taking its
        // arenas for the new node threads among the JVM's), and 36 to 56 KiB over the last 50;
        // 20 + 300 cycles: +0.4 MiB over the first 30, then +0.1 MiB over 250. So the last 50
        // may add at most 512 KiB (a leak of 10 KiB per cycle would show), and the 100 at most
        // 4 MiB (the allocator's settling).
        final int warmUp = Integer.getInteger("warmup", 50);
        final int cycles = Integer.getInteger("cycles", 100);
        // Its peer, so that every cycle makes a link (handshake, session, peer_up).
        Recorder rp = new Recorder();
        try (Node peer = Node.create(config(stateDir("peer")), rp)) {
            peer.startPacketMode(rp);
            String uri = "udp://127.0.0.1:" + port(peer);
            // Events only (no onLog: no line crosses into the JVM), so that log lines kept over
            // hundreds of cycles do not count as growth.
            Recorder r = new Recorder();
            NodeListener events = new NodeListener() {
                @Override
                public void onReady(String address, String publicKey) {
                    r.onReady(address, publicKey);
                }

                @Override
                public void onPeerUp(String publicKey, String address) {
                    r.onPeerUp(publicKey, address);
                }

                @Override
                public void onStopped(String error) {
                    r.onStopped(error);
                }
            };
            Config c = new Config(stateDir("cycles")).listen("udp://127.0.0.1:0").peer(uri);
            try (Node n = Node.create(c, events)) {
                // The peer's own thread.
                Check.equal(1L, nodeThreads(), "planetary-node threads before the cycles");
                long tasks0 = 0, fds0 = 0, rss0 = 0, jvm0 = 0, rssHalf = 0;
                for (int i = 0; i < warmUp + cycles; i++) {
                    if (i == warmUp) {
                        System.gc();
                        tasks0 = settled("/proc/self/task");
                        fds0 = settled("/proc/self/fd");
                        rss0 = rssKiB();
                        jvm0 = ManagementFactory.getThreadMXBean().getThreadCount();
                        System.out.println("after " + warmUp + " warm-up cycles: " + usage());
                        nmt("baseline");
                    }
                    int ups = r.count("peer_up");
                    n.startPacketMode(r);
                    Check.eventually(5000, "peer_up in cycle " + i, () -> r.count("peer_up") > ups);
                    n.stop();
                    Check.equal("stopped", r.last().kind, "cycle " + i);
                    Check.equal(1L, nodeThreads(), "planetary-node threads after stop, cycle " + i);
                    if (i == warmUp + cycles / 2) {
                        rssHalf = rssKiB();
                    }
                    if (i > warmUp && (i - warmUp) % Integer.getInteger("every", 100) == 0) {
                        System.out.println("after " + (i - warmUp) + " cycles: " + usage());
                    }
                }
                System.gc();
                System.out.println("after " + cycles + " more cycles:    " + usage());
                nmt("summary.diff");
                Check.equal(tasks0, settled("/proc/self/task"), "threads (/proc/self/task)");
                Check.equal(fds0, settled("/proc/self/fd"), "descriptors (/proc/self/fd)");
                Check.equal(jvm0, (long) ManagementFactory.getThreadMXBean().getThreadCount(), "JVM live threads");
                long end = rssKiB();
                System.out.printf("RSS: +%d KiB over %d cycles, +%d KiB over the last %d%n",
                        end - rss0, cycles, end - rssHalf, cycles - cycles / 2);
                Check.that(end - rssHalf < 512, "RSS grew by " + (end - rssHalf) + " KiB over the last "
                        + (cycles - cycles / 2) + " cycles");
                Check.that(end - rss0 < 4 * 1024, "RSS grew by " + (end - rss0) + " KiB over " + cycles + " cycles");
            }
        }
    }

    // ---------------------------------------------------------------------------------------

    /**
     * Socket protection from Java: every socket reaches the protector before use (and again
     * after a network change); a refusal with protection required fails the start with the
     * reason; a protector that throws refuses; bad calls throw.
     */
    static void socketProtectionAndNetworkChanges() throws Exception {
        List<int[]> seen = Collections.synchronizedList(new ArrayList<>());
        SocketProtector recording = (fd, kind) -> {
            seen.add(new int[] {fd, kind});
            return true;
        };
        Recorder r = new Recorder();
        Node n = Node.create(config(stateDir("protect")), r);
        planetary(Code.NOT_RUNNING, "not running", () -> n.networkChanged());
        npe("protector", () -> n.setSocketProtector(null, true));
        n.setSocketProtector(recording, true);
        n.startPacketMode(r);
        long udp = seen.stream().filter(s -> s[1] == SocketProtector.UDP).count();
        Check.that(udp >= 1, "the UDP sockets were protected: " + seen.size());
        for (int[] s : seen) {
            Check.that(s[0] > 2, "a real descriptor: " + s[0]);
        }
        int before = port(n);
        planetary(Code.ALREADY_RUNNING, "before the node starts", () -> n.setSocketProtector(recording, true));
        n.networkChanged();
        long after = seen.stream().filter(s -> s[1] == SocketProtector.UDP).count();
        Check.that(after > udp, "the sockets bound again were protected again");
        Check.equal(before, port(n), "the port is kept");
        n.stop();

        // Required, refused: the start fails and says why.
        n.setSocketProtector((fd, kind) -> false, true);
        PlanetaryException e = planetary(Code.START_FAILED, "refused the UDP socket", () -> n.startPacketMode(r));
        Check.mentions(e, "VpnService.protect");
        // A protector that throws refuses too (and the exception is logged, not left pending).
        try (CapturedLog captured = new CapturedLog()) {
            List<LogRecord> warnings = captured.records;
            n.setSocketProtector((fd, kind) -> {
                throw new IllegalStateException("no VPN service");
            }, true);
            planetary(Code.START_FAILED, "refused the UDP socket", () -> n.startPacketMode(r));
            Check.that(
                    warnings.stream().anyMatch(w -> w.getThrown() != null
                            && "no VPN service".equals(w.getThrown().getMessage())),
                    "the protector's exception was logged");
        }
        // Not required: the node runs.
        n.setSocketProtector((fd, kind) -> false, false);
        n.startPacketMode(r);
        Check.that(n.status().getAddress().equals(n.address()), "runs unprotected");
        n.stop();
        // Off.
        n.setSocketProtector(null, false);
        n.startPacketMode(r);
        n.stop();
        n.close();
        planetary(Code.INVALID_HANDLE, "closed", () -> n.networkChanged());
        planetary(Code.INVALID_HANDLE, "closed", () -> n.setSocketProtector(recording, false));
    }
}
