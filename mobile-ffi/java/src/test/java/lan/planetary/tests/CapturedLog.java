package lan.planetary.tests;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.logging.Handler;
import java.util.logging.LogRecord;
import java.util.logging.Logger;

/**
 * What the API logs to {@code lan.planetary} while it is open, kept instead of printed (a
 * printed WARNING line would fail the test run, which looks for -Xcheck:jni's warnings).
 */
final class CapturedLog implements AutoCloseable {
    final List<LogRecord> records = Collections.synchronizedList(new ArrayList<>());
    private final Logger log = Logger.getLogger("lan.planetary");
    private final Handler handler = new Handler() {
        @Override
        public void publish(LogRecord rec) {
            records.add(rec);
        }

        @Override
        public void flush() {}

        @Override
        public void close() {}
    };

    CapturedLog() {
        log.addHandler(handler);
        log.setUseParentHandlers(false);
    }

    @Override
    public void close() {
        log.removeHandler(handler);
        log.setUseParentHandlers(true);
    }
}
