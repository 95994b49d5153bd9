package lan.planetary;

import java.util.logging.Level;

/** What the native side calls for each packet in packet mode; catches the listener's exceptions. */
final class PacketDispatch {
    private final PacketListener listener;

    PacketDispatch(PacketListener listener) {
        this.listener = listener;
    }

    /** Called from native code. */
    void packet(byte[] packet) {
        try {
            listener.onPacket(packet);
        } catch (Throwable t) {
            Dispatch.LOG.log(Level.WARNING, "a PacketListener threw; ignored", t);
        }
    }
}
