package lan.planetary;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * The common keys of a node's configuration, as a builder; {@link #toJson()} gives the JSON
 * that {@link Node#create(String, NodeListener)} takes. For keys not here (policy_file,
 * discovery, ...), write the JSON yourself: see docs/MOBILE.md.
 */
public final class Config {
    private final String stateDir;
    private final List<String> listen = new ArrayList<>();
    private final List<String> peers = new ArrayList<>();
    private String logLevel;
    private int mtu;

    /** {@code stateDir}: an absolute directory the app owns, for the key and added peers. */
    public Config(String stateDir) {
        this.stateDir = Objects.requireNonNull(stateDir, "stateDir must not be null");
    }

    /** Listens on a socket, e.g. {@code udp://[::]:7820} (port 0: any free port). */
    public Config listen(String uri) {
        listen.add(Objects.requireNonNull(uri, "listen uri must not be null"));
        return this;
    }

    /** Links with a peer, e.g. {@code udp://198.51.100.7:7820?key=...}. */
    public Config peer(String uri) {
        peers.add(Objects.requireNonNull(uri, "peer uri must not be null"));
        return this;
    }

    /** A log filter such as {@code info} or {@code debug}. */
    public Config logLevel(String level) {
        this.logLevel = Objects.requireNonNull(level, "log level must not be null");
        return this;
    }

    /** The MTU (at least 1280). */
    public Config mtu(int mtu) {
        this.mtu = mtu;
        return this;
    }

    /** The configuration as JSON. */
    public String toJson() {
        StringBuilder b = new StringBuilder("{\"state_dir\":").append(quote(stateDir));
        if (!listen.isEmpty()) {
            b.append(",\"listen\":").append(array(listen));
        }
        if (!peers.isEmpty()) {
            b.append(",\"peers\":").append(array(peers));
        }
        if (logLevel != null) {
            b.append(",\"log_level\":").append(quote(logLevel));
        }
        if (mtu != 0) {
            b.append(",\"tun\":{\"mtu\":").append(mtu).append('}');
        }
        return b.append('}').toString();
    }

    private static String array(List<String> items) {
        StringBuilder b = new StringBuilder("[");
        for (int i = 0; i < items.size(); i++) {
            b.append(i == 0 ? "" : ",").append(quote(items.get(i)));
        }
        return b.append(']').toString();
    }

    static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '"' || c == '\\') {
                b.append('\\').append(c);
            } else if (c < 0x20) {
                b.append(String.format("\\u%04x", (int) c));
            } else {
                b.append(c);
            }
        }
        return b.append('"').toString();
    }

    @Override
    public String toString() {
        return toJson();
    }
}
