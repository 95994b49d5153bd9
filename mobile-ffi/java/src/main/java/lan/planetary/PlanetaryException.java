package lan.planetary;

/**
 * A call the library could not carry out. Unchecked, like the platform's own {@code
 * IllegalStateException} which it extends: nearly every failure says the node cannot do this
 * now (closed, not running, already running, called from inside a callback, busy, refused),
 * and Kotlin has no checked exceptions anyway. {@link #getCode()} says which; the message
 * says what went wrong and what to do.
 *
 * <p>Mistakes the Java side catches before calling the library are the platform's usual
 * exceptions instead: {@link NullPointerException} for a null argument, {@link
 * IndexOutOfBoundsException} for an offset or length outside an array.
 */
public class PlanetaryException extends IllegalStateException {
    private static final long serialVersionUID = 1L;

    /** The library's status codes ({@code PlStatus} of the C API, same numbers). */
    public enum Code {
        /** A required argument was null. */
        NULL_POINTER(1),
        /** Malformed: invalid JSON or configuration, a packet that is not IPv6 or too big, a bad URI. */
        INVALID_ARGUMENT(2),
        /** The node is closed (or the handle was never valid). */
        INVALID_HANDLE(3),
        /** The node is running (or being started) already. */
        ALREADY_RUNNING(4),
        /** The node is not running: never started, stopped, or it stopped by itself. */
        NOT_RUNNING(5),
        /** The TUN descriptor is closed or not a TUN device. */
        BAD_DESCRIPTOR(6),
        /** The node could not start (a listen port in use, an unreadable key, ...). */
        START_FAILED(7),
        /** Packet mode: the node's queue is full and the packet was dropped. Not fatal. */
        QUEUE_FULL(8),
        /** The node did not answer in time, or its thread has not finished yet. */
        TIMEOUT(9),
        /** A call that waits for a node was made inside a listener callback. */
        WRONG_THREAD(10),
        /** The node refused the request (the message says why). */
        REFUSED(11),
        /** A file or system call failed. */
        IO(12),
        /** A bug in the library (a Rust panic); please report it. */
        PANIC(13),
        /** A code this version of the Java API does not know. */
        UNKNOWN(-1);

        private final int value;

        Code(int value) {
            this.value = value;
        }

        /** The numeric code, as the C API returns it. */
        public int value() {
            return value;
        }

        /** The C API's name of the code, e.g. {@code PL_ERR_NOT_RUNNING}. */
        public String cName() {
            return this == UNKNOWN ? "PL_UNKNOWN_STATUS" : "PL_ERR_" + name();
        }

        /** The code with this number ({@link #UNKNOWN} if none). */
        public static Code of(int value) {
            for (Code c : values()) {
                if (c.value == value) {
                    return c;
                }
            }
            return UNKNOWN;
        }
    }

    private final Code code;
    private final int rawCode;

    /** Called by the native side with the library's status and message. */
    PlanetaryException(int rawCode, String message) {
        super(message + " (" + Code.of(rawCode).cName() + ")");
        this.rawCode = rawCode;
        this.code = Code.of(rawCode);
    }

    PlanetaryException(Code code, String message) {
        this(code.value(), message);
    }

    /** Which failure this is. */
    public Code getCode() {
        return code;
    }

    /** The numeric status code, as the C API returns it. */
    public int getRawCode() {
        return rawCode;
    }
}
