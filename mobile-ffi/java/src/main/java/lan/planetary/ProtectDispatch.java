package lan.planetary;

import java.util.logging.Level;

/** What the native side calls for each new socket; a protector that throws refuses. */
final class ProtectDispatch {
    private final SocketProtector protector;

    ProtectDispatch(SocketProtector protector) {
        this.protector = protector;
    }

    /** Called from native code, on the node's thread. */
    boolean protect(int fd, int kind) {
        try {
            return protector.protect(fd, kind);
        } catch (Throwable t) {
            Dispatch.LOG.log(Level.WARNING, "a SocketProtector threw; the socket counts as refused", t);
            return false;
        }
    }
}
