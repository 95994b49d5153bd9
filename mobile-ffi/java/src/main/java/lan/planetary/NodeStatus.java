package lan.planetary;

import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A snapshot of a running node ({@link Node#status()}): the same facts as {@code meshctl status
 * --json}. The main ones are typed fields; every numeric counter of that JSON is also in {@link
 * #getCounters()} under its dotted path (e.g. {@code counters.rx_datagrams}, {@code
 * e2e.sessions}, {@code local.dropped.no_route}).
 */
public final class NodeStatus {
    private final String publicKey;
    private final String address;
    private final String subnet;
    private final List<String> listen;
    private final int mtu;
    private final String version;
    private final String keyName;
    private final long uptimeSeconds;
    private final int peersUp;
    private final int peersConfigured;
    private final long droppedFromNetwork;
    private final Map<String, Long> counters;

    /** Made by the native side. */
    NodeStatus(
            String publicKey,
            String address,
            String subnet,
            String[] listen,
            int mtu,
            String version,
            String keyName,
            long uptimeSeconds,
            int peersUp,
            int peersConfigured,
            long droppedFromNetwork,
            String[] counterNames,
            long[] counterValues) {
        this.publicKey = publicKey;
        this.address = address;
        this.subnet = subnet;
        this.listen = Collections.unmodifiableList(Arrays.asList(listen.clone()));
        this.mtu = mtu;
        this.version = version;
        this.keyName = keyName;
        this.uptimeSeconds = uptimeSeconds;
        this.peersUp = peersUp;
        this.peersConfigured = peersConfigured;
        this.droppedFromNetwork = droppedFromNetwork;
        Map<String, Long> c = new LinkedHashMap<>();
        for (int i = 0; i < counterNames.length && i < counterValues.length; i++) {
            c.put(counterNames[i], counterValues[i]);
        }
        this.counters = Collections.unmodifiableMap(c);
    }

    /** The node's public key (64 hex digits). */
    public String getPublicKey() {
        return publicKey;
    }

    /** The node's overlay address, e.g. {@code 203:9a1f:...}. */
    public String getAddress() {
        return address;
    }

    /** The /64 the node owns. */
    public String getSubnet() {
        return subnet;
    }

    /** The sockets it listens on, with the ports bound (e.g. {@code udp://127.0.0.1:43117}). */
    public List<String> getListen() {
        return listen;
    }

    /** The MTU of its interface. */
    public int getMtu() {
        return mtu;
    }

    /** The library's version. */
    public String getVersion() {
        return version;
    }

    /** The node's key name ({@code <key in base32>.<suffix>}), or null. */
    public String getKeyName() {
        return keyName;
    }

    /** Seconds since it started. */
    public long getUptimeSeconds() {
        return uptimeSeconds;
    }

    /** Links up. */
    public int getPeersUp() {
        return peersUp;
    }

    /** Peers configured. */
    public int getPeersConfigured() {
        return peersConfigured;
    }

    /** Datagrams from the network that were dropped, all reasons. */
    public long getDroppedFromNetwork() {
        return droppedFromNetwork;
    }

    /** Every numeric counter, by dotted path, in the order of the JSON. */
    public Map<String, Long> getCounters() {
        return counters;
    }

    /** One counter by dotted path ({@code counters.rx_datagrams}), 0 if there is none. */
    public long counter(String path) {
        Long v = counters.get(path);
        return v == null ? 0 : v;
    }

    @Override
    public String toString() {
        return "NodeStatus{address=" + address + ", publicKey=" + publicKey + ", listen=" + listen
                + ", uptimeSeconds=" + uptimeSeconds + ", peersUp=" + peersUp
                + ", peersConfigured=" + peersConfigured + ", counters=" + counters.size() + "}";
    }
}
