package lan.planetary;

/**
 * The native methods, registered by the library's {@code JNI_OnLoad} ({@code RegisterNatives}),
 * not looked up by exported names. A {@code long} is a node handle: a number the library never
 * reuses, so a closed node's handle is an error, never a use-after-free. Each method throws
 * {@link PlanetaryException} (or {@link NullPointerException}) on failure.
 */
final class Native {
    static {
        System.loadLibrary("planetary_lan");
    }

    private Native() {}

    /** Makes a node; {@code events} gets events, and log lines if {@code logs}. */
    static native long create(String configJson, Dispatch events, boolean logs);

    static native void start(long node, int tunFd);

    static native void startPacketMode(long node, PacketDispatch packets);

    /** false: the queue was full and the packet was dropped. */
    static native boolean sendPacket(long node, byte[] packet, int offset, int length);

    /** {@code protector} null: no protection. */
    static native void setProtect(long node, ProtectDispatch protector, boolean required);

    static native void networkChanged(long node);

    static native void stop(long node);

    static native void free(long node);

    static native NodeStatus status(long node);

    static native Peer[] peers(long node);

    static native void addPeer(long node, String uri);

    static native void removePeer(long node, String uri);

    static native String address(long node);

    static native String publicKey(long node);

    static native String version();
}
