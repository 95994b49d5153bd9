package lan.planetary.tests;

import java.util.function.Supplier;

/** A tiny assertion helper (no JUnit on the build machines). */
final class Check {
    private Check() {}

    static void that(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    static void equal(Object expected, Object actual, String what) {
        if (expected == null ? actual != null : !expected.equals(actual)) {
            throw new AssertionError(what + ": expected <" + expected + ">, got <" + actual + ">");
        }
    }

    /** Runs {@code body}, which must throw a {@code type}; returns it. */
    static <T extends Throwable> T throwsA(Class<T> type, String what, ThrowingRunnable body) {
        try {
            body.run();
        } catch (Throwable t) {
            if (type.isInstance(t)) {
                return type.cast(t);
            }
            AssertionError e = new AssertionError(what + ": expected " + type.getSimpleName() + ", got " + t);
            e.initCause(t);
            throw e;
        }
        throw new AssertionError(what + ": expected " + type.getSimpleName() + ", nothing was thrown");
    }

    /** The message contains {@code part}. */
    static void mentions(Throwable t, String part) {
        String m = String.valueOf(t.getMessage());
        if (!m.contains(part)) {
            throw new AssertionError("message <" + m + "> does not mention <" + part + ">");
        }
    }

    /** Waits until {@code cond} holds (polling), at most {@code millis}. */
    static void eventually(long millis, String what, Supplier<Boolean> cond) throws InterruptedException {
        long deadline = System.nanoTime() + millis * 1_000_000L;
        while (!cond.get()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out after " + millis + " ms waiting for " + what);
            }
            Thread.sleep(5);
        }
    }

    interface ThrowingRunnable {
        void run() throws Exception;
    }
}
