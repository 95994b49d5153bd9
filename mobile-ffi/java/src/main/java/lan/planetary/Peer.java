package lan.planetary;

import java.util.Arrays;
import java.util.Collections;
import java.util.List;

/**
 * One peer of a node ({@link Node#peers()}): a link, or a configured peer not linked yet. The
 * same facts as {@code meshctl peers --json}. Fields the node does not know yet are null.
 */
public final class Peer {
    private final String publicKey;
    private final String address;
    private final String state;
    private final String uri;
    private final String endpoint;
    private final long rxBytes;
    private final long txBytes;
    private final long rxPackets;
    private final long txPackets;
    private final long upSeconds;
    private final long lastHandshakeSeconds;
    private final String cipher;
    private final String lastError;
    private final String origin;
    private final String transport;
    private final List<String> paths;

    /** Made by the native side; -1 stands for an unknown number of seconds. */
    Peer(
            String publicKey,
            String address,
            String state,
            String uri,
            String endpoint,
            long rxBytes,
            long txBytes,
            long rxPackets,
            long txPackets,
            long upSeconds,
            long lastHandshakeSeconds,
            String cipher,
            String lastError,
            String origin,
            String transport,
            String[] paths) {
        this.publicKey = publicKey;
        this.address = address;
        this.state = state;
        this.uri = uri;
        this.endpoint = endpoint;
        this.rxBytes = rxBytes;
        this.txBytes = txBytes;
        this.rxPackets = rxPackets;
        this.txPackets = txPackets;
        this.upSeconds = upSeconds;
        this.lastHandshakeSeconds = lastHandshakeSeconds;
        this.cipher = cipher;
        this.lastError = lastError;
        this.origin = origin;
        this.transport = transport;
        this.paths = Collections.unmodifiableList(Arrays.asList(paths.clone()));
    }

    /** The peer's public key; null while not linked and no key was pinned. */
    public String getPublicKey() {
        return publicKey;
    }

    /** The peer's overlay address; null while its key is unknown. */
    public String getAddress() {
        return address;
    }

    /** {@code up}, {@code connecting} (dialing, no answer yet) or {@code down} (waiting to redial). */
    public String getState() {
        return state;
    }

    /** Whether the link is up. */
    public boolean isUp() {
        return "up".equals(state);
    }

    /** The configured URI; null for a peer that dialed this node or was discovered. */
    public String getUri() {
        return uri;
    }

    /** Where its datagrams come from; null if unknown. */
    public String getEndpoint() {
        return endpoint;
    }

    /** Bytes received on the wire. */
    public long getRxBytes() {
        return rxBytes;
    }

    /** Bytes sent on the wire. */
    public long getTxBytes() {
        return txBytes;
    }

    /** IPv6 packets received. */
    public long getRxPackets() {
        return rxPackets;
    }

    /** IPv6 packets sent. */
    public long getTxPackets() {
        return txPackets;
    }

    /** Seconds since the link came up; null if it is not up. */
    public Long getUpSeconds() {
        return upSeconds < 0 ? null : upSeconds;
    }

    /** Seconds since the last completed handshake; null if none. */
    public Long getLastHandshakeSeconds() {
        return lastHandshakeSeconds < 0 ? null : lastHandshakeSeconds;
    }

    /** The AEAD of the current session; null if none. */
    public String getCipher() {
        return cipher;
    }

    /** Why the last dial failed; null if it did not. */
    public String getLastError() {
        return lastError;
    }

    /** Why this node links with it: {@code configured}, {@code discovered}, {@code inbound}, {@code punched}; null if unknown. */
    public String getOrigin() {
        return origin;
    }

    /** The link's transport: {@code udp}, {@code tcp} or {@code quic}; null if unknown. */
    public String getTransport() {
        return transport;
    }

    /** Every path the peer was heard on lately, the one in use first. */
    public List<String> getPaths() {
        return paths;
    }

    @Override
    public String toString() {
        return "Peer{address=" + address + ", state=" + state + ", uri=" + uri + ", endpoint="
                + endpoint + ", rxPackets=" + rxPackets + ", txPackets=" + txPackets + "}";
    }
}
