package lan.planetary.tests;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import lan.planetary.NodeListener;
import lan.planetary.PacketListener;

/** A listener that records events, log lines and packets, for the tests to wait on. */
class Recorder implements NodeListener, PacketListener {
    /** One event: its kind and strings. */
    static final class Event {
        final String kind;
        final String a;
        final String b;
        final String thread;

        Event(String kind, String a, String b) {
            this.kind = kind;
            this.a = a;
            this.b = b;
            this.thread = Thread.currentThread().getName();
        }

        @Override
        public String toString() {
            return kind + "(" + a + ", " + b + ") on " + thread;
        }
    }

    final List<Event> events = new ArrayList<>();
    final List<String> logs = new ArrayList<>();
    final LinkedBlockingQueue<byte[]> packets = new LinkedBlockingQueue<>();

    private synchronized void add(Event e) {
        events.add(e);
        notifyAll();
    }

    synchronized List<Event> events() {
        return new ArrayList<>(events);
    }

    synchronized int count(String kind) {
        int n = 0;
        for (Event e : events) {
            n += e.kind.equals(kind) ? 1 : 0;
        }
        return n;
    }

    synchronized Event last() {
        return events.isEmpty() ? null : events.get(events.size() - 1);
    }

    /** Waits until some event satisfies {@code p}. */
    synchronized Event await(long millis, String what, Predicate<Event> p) throws InterruptedException {
        long deadline = System.currentTimeMillis() + millis;
        while (true) {
            for (Event e : events) {
                if (p.test(e)) {
                    return e;
                }
            }
            long left = deadline - System.currentTimeMillis();
            if (left <= 0) {
                throw new AssertionError("no " + what + " within " + millis + " ms; events: " + events);
            }
            wait(left);
        }
    }

    /** Takes packets until one satisfies {@code p}, or none within {@code millis}. */
    byte[] takePacket(long millis, Predicate<byte[]> p) throws InterruptedException {
        long deadline = System.currentTimeMillis() + millis;
        while (true) {
            long left = deadline - System.currentTimeMillis();
            if (left <= 0) {
                return null;
            }
            byte[] got = packets.poll(left, TimeUnit.MILLISECONDS);
            if (got != null && p.test(got)) {
                return got;
            }
        }
    }

    @Override
    public void onReady(String address, String publicKey) {
        add(new Event("ready", address, publicKey));
    }

    @Override
    public void onPeerUp(String publicKey, String address) {
        add(new Event("peer_up", publicKey, address));
    }

    @Override
    public void onPeerDown(String publicKey, String address) {
        add(new Event("peer_down", publicKey, address));
    }

    @Override
    public void onStopped(String error) {
        add(new Event("stopped", error, null));
    }

    @Override
    public void onLog(int level, String message) {
        synchronized (logs) {
            logs.add(level + " " + message);
        }
    }

    @Override
    public void onPacket(byte[] packet) {
        packets.add(packet);
    }
}
