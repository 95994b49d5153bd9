package lan.planetary;

/**
 * Packet mode: receives each IPv6 packet the node has for the app's network stack (see {@link
 * Node#startPacketMode}). Called on the node's thread, one packet at a time; the array is the
 * listener's to keep. Like {@link NodeListener}, it must return quickly, may call {@link
 * Node#sendPacket}, and any exception it throws is logged and ignored.
 */
@FunctionalInterface
public interface PacketListener {
    /** One IPv6 packet for the app. */
    void onPacket(byte[] packet);
}
