package lan.planetary;

import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * What the native side calls on the node's thread: one object per node, holding the app's
 * listener. It catches whatever the listener throws, so that no exception is left pending in
 * the node's thread.
 */
final class Dispatch {
    static final Logger LOG = Logger.getLogger("lan.planetary");

    // Event kinds, as the native side passes them.
    static final int READY = 0;
    static final int PEER_UP = 1;
    static final int PEER_DOWN = 2;
    static final int STOPPED = 3;

    private final NodeListener listener;

    Dispatch(NodeListener listener) {
        this.listener = listener;
    }

    /** Whether the listener overrides {@code onLog} (else no line is sent to the JVM). */
    boolean wantsLogs() {
        try {
            return listener.getClass().getMethod("onLog", int.class, String.class).getDeclaringClass()
                    != NodeListener.class;
        } catch (NoSuchMethodException | SecurityException e) {
            return true;
        }
    }

    /** Called from native code. */
    void event(int kind, String a, String b) {
        try {
            switch (kind) {
                case READY:
                    listener.onReady(a, b);
                    break;
                case PEER_UP:
                    listener.onPeerUp(a, b);
                    break;
                case PEER_DOWN:
                    listener.onPeerDown(a, b);
                    break;
                case STOPPED:
                    listener.onStopped(a);
                    break;
                default:
                    break;
            }
        } catch (Throwable t) {
            LOG.log(Level.WARNING, "a NodeListener threw (event " + kind + "); ignored", t);
        }
    }

    /** Called from native code. */
    void log(int level, String message) {
        try {
            listener.onLog(level, message);
        } catch (Throwable t) {
            LOG.log(Level.WARNING, "NodeListener.onLog threw; ignored", t);
        }
    }
}
