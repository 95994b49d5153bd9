package lan.planetary;

import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Objects;

/**
 * A Planetary LAN node running inside the app's process: the Java face of {@code
 * libplanetary_lan} (load it with {@code System.loadLibrary("planetary_lan")}, which this class
 * does).
 *
 * <pre>{@code
 * try (Node node = Node.create(configJson, listener)) {  // loads or creates the key
 *     String address = node.address();                   // known before start: configure the VPN
 *     node.start(tun.getFd());                           // Android VpnService descriptor
 *     // or node.startPacketMode(packet -> ...); node.sendPacket(bytes);
 *     NodeStatus st = node.status();  List<Peer> peers = node.peers();
 *     node.stop();                                       // may be started again
 * }                                                      // close(): stops if running, frees
 * }</pre>
 *
 * <p><b>Threads.</b> Every method may be called from any thread; none holds a Java lock. None
 * blocks for long: {@code start} waits until the node is up (at most 10 s), {@code status},
 * {@code peers}, {@code addPeer}, {@code removePeer} wait at most 5 s for the node's answer,
 * {@code stop} and {@code close} at most 5 s for its thread, {@code sendPacket} never waits.
 * Listener callbacks run on the node's thread: see {@link NodeListener}.
 *
 * <p><b>Errors</b> throw {@link PlanetaryException} with the library's code and message; a null
 * argument throws {@link NullPointerException}. After {@link #close()} every method but {@code
 * close} throws {@link PlanetaryException} with {@link PlanetaryException.Code#INVALID_HANDLE}.
 *
 * <p><b>Resources.</b> A node holds a thread while running, sockets, a lock on its {@code
 * state_dir} and references to its listeners until {@link #close()}: close it (it is {@link
 * AutoCloseable}). The node's data path never enters the JVM in descriptor mode.
 */
public final class Node implements AutoCloseable {
    private final long handle;
    private final Dispatch dispatch;
    private volatile boolean closed;

    private Node(long handle, Dispatch dispatch) {
        this.handle = handle;
        this.dispatch = dispatch;
    }

    /**
     * Makes a node from its configuration (JSON, see docs/MOBILE.md: {@code state_dir} is
     * required). Loads {@code <state_dir>/identity.key}, creating it on first use, so that
     * {@link #address()} answers before the node starts. Does not start it.
     *
     * @throws NullPointerException if an argument is null
     * @throws PlanetaryException {@code INVALID_ARGUMENT} for invalid JSON or configuration (the
     *     message names the key), {@code IO} if the state directory or key cannot be used
     */
    public static Node create(String configJson, NodeListener listener) {
        Objects.requireNonNull(configJson, "configJson must not be null");
        Objects.requireNonNull(listener, "listener must not be null (use Node.create(configJson) for none)");
        Dispatch d = new Dispatch(listener);
        long h = Native.create(configJson, d, d.wantsLogs());
        return new Node(h, d);
    }

    /** {@link #create(String, NodeListener)} from a {@link Config}. */
    public static Node create(Config config, NodeListener listener) {
        Objects.requireNonNull(config, "config must not be null");
        return create(config.toJson(), listener);
    }

    /** A node without a listener: no events, no log lines. */
    public static Node create(String configJson) {
        return create(configJson, new NodeListener() {});
    }

    /** The library's version, e.g. {@code 0.1.0}. */
    public static String version() {
        return Native.version();
    }

    private long live() {
        if (closed) {
            throw new PlanetaryException(PlanetaryException.Code.INVALID_HANDLE, "this Node is closed");
        }
        return handle;
    }

    /**
     * Runs the node on a TUN descriptor (Android: {@code
     * VpnService.Builder.establish().getFd()}), already given the node's address with prefix 7
     * and the route {@code 200::/7}. The node works on a duplicate: the app keeps and closes its
     * own descriptor. Packets never cross into the JVM. Returns once the node is up.
     *
     * @throws PlanetaryException {@code BAD_DESCRIPTOR}, {@code START_FAILED}, {@code
     *     ALREADY_RUNNING}, ...
     */
    public void start(int tunFd) {
        Native.start(live(), tunFd);
    }

    /**
     * Runs the node without a descriptor: the app hands packets in with {@link #sendPacket}, and
     * {@code listener} receives the node's packets on the node's thread.
     */
    public void startPacketMode(PacketListener listener) {
        Objects.requireNonNull(listener, "packet listener must not be null");
        Native.startPacketMode(live(), new PacketDispatch(listener));
    }

    /**
     * Packet mode: hands one IPv6 packet to the node. Never blocks: returns false when the node
     * is behind and the packet was dropped (its queue holds 4,096 packets), as a NIC would.
     *
     * @throws PlanetaryException {@code INVALID_ARGUMENT} for a packet that is not IPv6 or
     *     exceeds the MTU, {@code NOT_RUNNING}, ...
     */
    public boolean sendPacket(byte[] packet) {
        Objects.requireNonNull(packet, "packet must not be null");
        return Native.sendPacket(live(), packet, 0, packet.length);
    }

    /** {@link #sendPacket(byte[])} for {@code length} bytes of {@code buf} from {@code offset}. */
    public boolean sendPacket(byte[] buf, int offset, int length) {
        Objects.requireNonNull(buf, "packet must not be null");
        // (Objects.checkFromIndexSize needs Android API level 30.)
        if (offset < 0 || length < 0 || length > buf.length - offset) {
            throw new IndexOutOfBoundsException(
                    "offset " + offset + ", length " + length + " outside an array of " + buf.length);
        }
        return Native.sendPacket(live(), buf, offset, length);
    }

    /**
     * Sets socket protection, for an app whose VPN takes all of the device's traffic (Android:
     * {@code node.setSocketProtector((fd, kind) -> vpnService.protect(fd), true)}). The node
     * hands {@code protector} every socket it opens towards the network (link UDP, TCP dials,
     * listeners and accepted connections, QUIC, LAN discovery, DNS forwarding) before it binds,
     * connects or uses it. With {@code required}, a socket the protector refuses is closed
     * unused: {@link #start} throws with the reason if a listening socket is refused, and a
     * refused dial opens no link (the peer's {@link Peer#getLastError} says why); without, a
     * refusal is logged and the socket used as it is. Call it before {@code start} (it holds
     * for every later start); {@code null} turns protection off.
     *
     * @throws PlanetaryException {@code ALREADY_RUNNING} while the node runs
     * @throws NullPointerException if {@code protector} is null and {@code required} is true
     */
    public void setSocketProtector(SocketProtector protector, boolean required) {
        if (protector == null && required) {
            throw new NullPointerException(
                    "protector must not be null when protection is required (give one that calls"
                            + " VpnService.protect, or pass required = false)");
        }
        Native.setProtect(live(), protector == null ? null : new ProtectDispatch(protector), required);
    }

    /**
     * The device's network changed (call it from {@code
     * ConnectivityManager.NetworkCallback.onAvailable} or {@code onLinkPropertiesChanged}): the
     * node binds its UDP sockets again on the same ports (protected again), moves its QUIC
     * endpoint to a new socket, re-learns its public endpoints, tells every peer where it is now
     * (they send there at once), probes its paths and dials unlinked peers at once. Sessions
     * carry on. Without this call the node notices by itself within about half a second of
     * traffic, or at its next keepalive.
     *
     * @throws PlanetaryException {@code NOT_RUNNING} if the node is not running; {@code
     *     WRONG_THREAD} from a listener callback
     */
    public void networkChanged() {
        Native.networkChanged(live());
    }

    /**
     * Stops the node: tells its peers, closes its sockets, and waits (at most 5 s) for its
     * thread; {@link NodeListener#onStopped} has run when it returns. It may be started again.
     *
     * @throws PlanetaryException {@code NOT_RUNNING} if it was not running, {@code TIMEOUT} if a
     *     listener callback has not returned (call again later)
     */
    public void stop() {
        Native.stop(live());
    }

    /**
     * Stops the node if it runs and frees it. Once this returns, no listener runs again. A
     * second call does nothing.
     *
     * @throws PlanetaryException {@code WRONG_THREAD} inside a listener callback, {@code
     *     TIMEOUT} if a listener callback has not returned within 5 s: the node stays open,
     *     call again later
     */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        try {
            Native.free(handle);
        } catch (PlanetaryException e) {
            // Freed meanwhile by another thread's close().
            if (e.getCode() != PlanetaryException.Code.INVALID_HANDLE) {
                throw e;
            }
        }
        closed = true;
    }

    /** Whether {@link #close()} has completed. */
    public boolean isClosed() {
        return closed;
    }

    /** The running node's status. */
    public NodeStatus status() {
        return Native.status(live());
    }

    /** The running node's peers: links, and configured peers not linked yet. */
    public List<Peer> peers() {
        return Collections.unmodifiableList(Arrays.asList(Native.peers(live())));
    }

    /**
     * Adds a peer ({@code udp://HOST:PORT[?key=PUBKEY]}, {@code tcp://}, {@code quic://}) to the
     * running node; it is kept in {@code state_dir} across restarts.
     *
     * @throws PlanetaryException {@code INVALID_ARGUMENT} for a bad URI, {@code REFUSED} if it
     *     is a peer already
     */
    public void addPeer(String uri) {
        Objects.requireNonNull(uri, "uri must not be null");
        Native.addPeer(live(), uri);
    }

    /** Removes a peer from the running node (and from {@code state_dir}), closing its link. */
    public void removePeer(String uri) {
        Objects.requireNonNull(uri, "uri must not be null");
        Native.removePeer(live(), uri);
    }

    /** The node's overlay address (e.g. {@code 203:9a1f:...}), known from {@link #create} on. */
    public String address() {
        return Native.address(live());
    }

    /** The node's public key (64 hex digits), which peers name it by. */
    public String publicKey() {
        return Native.publicKey(live());
    }

    @Override
    public String toString() {
        return "Node{handle=" + handle + (closed ? ", closed" : "") + "}";
    }
}
