package lan.planetary.tests;

import java.net.Inet6Address;
import java.net.InetAddress;
import java.net.UnknownHostException;

/** ICMPv6 echo packets, with their checksum (RFC 4443 over the RFC 8200 pseudo-header). */
final class Icmp {
    static final int REQUEST = 128;
    static final int REPLY = 129;

    private Icmp() {}

    static byte[] address(String a) {
        try {
            InetAddress ia = InetAddress.getByName(a);
            if (!(ia instanceof Inet6Address)) {
                throw new IllegalArgumentException(a + " is not IPv6");
            }
            return ia.getAddress();
        } catch (UnknownHostException e) {
            throw new IllegalArgumentException(e);
        }
    }

    static byte[] echo(int type, byte[] src, byte[] dst, int id, int seq, byte[] payload) {
        int bodyLen = 8 + payload.length;
        byte[] p = new byte[40 + bodyLen];
        p[0] = 0x60;
        p[4] = (byte) (bodyLen >> 8);
        p[5] = (byte) bodyLen;
        p[6] = 58; // next header: ICMPv6
        p[7] = 64; // hop limit
        System.arraycopy(src, 0, p, 8, 16);
        System.arraycopy(dst, 0, p, 24, 16);
        p[40] = (byte) type;
        p[44] = (byte) (id >> 8);
        p[45] = (byte) id;
        p[46] = (byte) (seq >> 8);
        p[47] = (byte) seq;
        System.arraycopy(payload, 0, p, 48, payload.length);
        int c = checksum(p);
        p[42] = (byte) (c >> 8);
        p[43] = (byte) c;
        return p;
    }

    /** The checksum of the ICMPv6 message in {@code p} (its checksum field taken as is). */
    static int checksum(byte[] p) {
        long sum = 0;
        for (int i = 8; i < 40; i += 2) {
            sum += ((p[i] & 0xff) << 8) | (p[i + 1] & 0xff);
        }
        int len = p.length - 40;
        sum += len;
        sum += 58;
        for (int i = 40; i < p.length; i += 2) {
            int hi = p[i] & 0xff;
            int lo = i + 1 < p.length ? p[i + 1] & 0xff : 0;
            sum += (hi << 8) | lo;
        }
        while ((sum >> 16) != 0) {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        return (int) (~sum & 0xffff);
    }

    /** Whether {@code p} is an ICMPv6 echo of {@code type} with this sequence number and a valid checksum. */
    static boolean isEcho(byte[] p, int type, int seq) {
        if (p.length < 48 || (p[0] >> 4 & 0xf) != 6 || p[6] != 58 || (p[40] & 0xff) != type) {
            return false;
        }
        int s = ((p[46] & 0xff) << 8) | (p[47] & 0xff);
        return s == seq && verify(p);
    }

    /** A received message's checksum is right when summing it with its checksum field gives 0. */
    static boolean verify(byte[] p) {
        byte[] copy = p.clone();
        int got = ((copy[42] & 0xff) << 8) | (copy[43] & 0xff);
        copy[42] = 0;
        copy[43] = 0;
        return checksum(copy) == got;
    }

    static byte[] src(byte[] p) {
        byte[] a = new byte[16];
        System.arraycopy(p, 8, a, 0, 16);
        return a;
    }

    static byte[] dst(byte[] p) {
        byte[] a = new byte[16];
        System.arraycopy(p, 24, a, 0, 16);
        return a;
    }
}
