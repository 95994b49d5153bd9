package lan.planetary;

/**
 * What a {@link Node} tells the app. Every method has an empty default: override the ones you
 * need.
 *
 * <p><b>Threading.</b> Calls arrive on the node's own thread (a native thread, attached to the
 * JVM as a daemon thread named {@code planetary-node}), one at a time per node. They must return
 * quickly: the node's data path waits for them. Post to your own executor or handler for
 * anything slow. Inside a callback, {@link Node#sendPacket} works, but a call that waits for a
 * node ({@code status}, {@code peers}, {@code addPeer}, {@code removePeer}, {@code start},
 * {@code stop}, {@code close}, of this node or any other) throws {@link PlanetaryException} with
 * {@link PlanetaryException.Code#WRONG_THREAD} instead of deadlocking.
 *
 * <p><b>Exceptions</b> thrown by a listener are caught, logged to the {@code java.util.logging}
 * logger {@code lan.planetary} (logcat on Android), and otherwise ignored: they never reach the
 * node.
 */
public interface NodeListener {
    /** The node is up (its sockets are bound); {@link Node#start} returns after this. */
    default void onReady(String address, String publicKey) {}

    /** A link with a peer came up. */
    default void onPeerUp(String publicKey, String address) {}

    /** A link with a peer went down. */
    default void onPeerDown(String publicKey, String address) {}

    /**
     * The node stopped: {@code error} is null after {@link Node#stop} (or {@link Node#close}),
     * else why it stopped by itself (say, the VPN descriptor was revoked). It may be started
     * again.
     */
    default void onStopped(String error) {}

    /**
     * One log line. {@code level}: 1 error, 2 warn, 3 info, 4 debug, 5 trace; the config's
     * {@code log_level} filters them. Lines are only sent to the JVM when this method is
     * overridden.
     */
    default void onLog(int level, String message) {}
}
