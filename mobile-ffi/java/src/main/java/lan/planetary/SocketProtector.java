package lan.planetary;

/**
 * Exempts the node's own sockets from the app's VPN: on Android, implement it with {@code
 * VpnService.protect(fd)}, so that the node's packets to its peers leave by the device's real
 * network instead of looping back into the VPN ({@link Node#setSocketProtector}).
 *
 * <p>The node calls {@link #protect} on its own thread for every socket it opens towards the
 * network, right after creating it and before binding, connecting or using it. It must return
 * quickly, and must not call the node's waiting methods (they throw there). A protector that
 * throws counts as refusing (the exception is logged to the {@code lan.planetary} logger).
 */
@FunctionalInterface
public interface SocketProtector {
    /** A UDP socket of a {@code udp://} listen address (links and their handshakes). */
    int UDP = 1;
    /** A TCP listener of a {@code tcp://} listen address. */
    int TCP_LISTENER = 2;
    /** An outgoing TCP connection to a {@code tcp://} peer. */
    int TCP_DIAL = 3;
    /** A TCP connection accepted from a peer (before it is read or written). */
    int TCP_ACCEPTED = 4;
    /** The UDP socket of the QUIC endpoint ({@code quic://} links). */
    int QUIC = 5;
    /** The LAN discovery socket. */
    int DISCOVERY = 6;
    /** The DNS forwarder's socket to the upstream resolver. */
    int DNS = 7;

    /**
     * Protects {@code fd} ({@code VpnService.protect(fd)}); returns whether it did.
     *
     * @param fd the socket's file descriptor (the node keeps ownership: do not close it)
     * @param kind what it is for: one of the constants of this interface
     */
    boolean protect(int fd, int kind);
}
