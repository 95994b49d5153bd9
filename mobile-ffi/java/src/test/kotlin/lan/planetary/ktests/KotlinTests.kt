// The Java API as a Kotlin app uses it (run by mobile-ffi/tests/jvm.rs with kotlinc and
// `java -Xcheck:jni`): properties for getters, a lambda for SocketProtector (SAM conversion),
// an object for NodeListener, `use` for AutoCloseable, exceptions caught by code. Two nodes in
// packet mode exchange an ICMPv6 echo built here; protection, network changes and bad calls.
package lan.planetary.ktests

import java.net.InetAddress
import java.nio.file.Files
import java.nio.file.Path
import java.nio.file.Paths
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import lan.planetary.Config
import lan.planetary.Node
import lan.planetary.NodeListener
import lan.planetary.PlanetaryException
import lan.planetary.SocketProtector
import kotlin.system.exitProcess

private lateinit var scratch: Path
private var dirs = 0

private fun stateDir(label: String): String {
    val d = scratch.resolve("$label-${dirs++}")
    Files.createDirectories(d)
    return d.toAbsolutePath().toString()
}

private fun check(ok: Boolean, what: () -> String) {
    if (!ok) throw AssertionError(what())
}

/** Events as a queue, so that a test can wait for one. */
private class Events : NodeListener {
    val queue = LinkedBlockingQueue<Pair<String, String?>>()
    override fun onReady(address: String, publicKey: String) { queue.add("ready" to address) }
    override fun onPeerUp(publicKey: String, address: String) { queue.add("peer_up" to address) }
    override fun onPeerDown(publicKey: String, address: String) { queue.add("peer_down" to address) }
    override fun onStopped(error: String?) { queue.add("stopped" to error) }

    fun await(kind: String, seconds: Long = 10): Pair<String, String?> {
        val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds)
        while (true) {
            val left = deadline - System.nanoTime()
            check(left > 0) { "no $kind event within $seconds s" }
            val e = queue.poll(left, TimeUnit.NANOSECONDS) ?: continue
            if (e.first == kind) return e
        }
    }
}

private fun sum16(b: ByteArray, from: Int, to: Int): Long {
    var s = 0L
    var i = from
    while (i < to) {
        val hi = b[i].toInt() and 0xff
        val lo = if (i + 1 < to) b[i + 1].toInt() and 0xff else 0
        s += (hi shl 8) or lo
        i += 2
    }
    return s
}

/** An ICMPv6 echo request (128) or reply (129) from `src` to `dst`, with its checksum. */
private fun echo(type: Int, src: ByteArray, dst: ByteArray, seq: Int, payload: ByteArray): ByteArray {
    val icmpLen = 8 + payload.size
    val p = ByteArray(40 + icmpLen)
    p[0] = 0x60
    p[4] = (icmpLen shr 8).toByte(); p[5] = icmpLen.toByte()
    p[6] = 58; p[7] = 64
    src.copyInto(p, 8); dst.copyInto(p, 24)
    p[40] = type.toByte()
    p[44] = 0; p[45] = 7                       // identifier
    p[46] = (seq shr 8).toByte(); p[47] = seq.toByte()
    payload.copyInto(p, 48)
    var s = sum16(p, 8, 40) + icmpLen + 58 + sum16(p, 40, p.size)
    while (s shr 16 != 0L) s = (s and 0xffff) + (s shr 16)
    val c = s.inv().toInt() and 0xffff
    p[42] = (c shr 8).toByte(); p[43] = c.toByte()
    return p
}

private fun isEcho(p: ByteArray, type: Int, seq: Int) =
    p.size >= 48 && p[6].toInt() == 58 && (p[40].toInt() and 0xff) == type &&
        ((p[46].toInt() and 0xff) shl 8 or (p[47].toInt() and 0xff)) == seq

private fun addr(a: String): ByteArray = InetAddress.getByName(a).address

private fun config(dir: String) = Config(dir).listen("udp://127.0.0.1:0").mtu(1280)

private fun port(n: Node): Int = n.status().listen[0].substringAfterLast(':').toInt()

fun echoBetweenTwoNodes() {
    val ea = Events()
    val eb = Events()
    val inA = LinkedBlockingQueue<ByteArray>()
    val inB = LinkedBlockingQueue<ByteArray>()
    Node.create(config(stateDir("b")), eb).use { b ->
        b.startPacketMode { inB.add(it) }
        eb.await("ready")
        val peer = "udp://127.0.0.1:${port(b)}"
        Node.create(config(stateDir("a")).peer(peer), ea).use { a ->
            val sockets = mutableListOf<Int>()
            a.setSocketProtector({ fd, kind -> sockets.add(kind); fd > 2 }, true)
            a.startPacketMode { inA.add(it) }
            check(sockets.contains(SocketProtector.UDP)) { "protector not called: $sockets" }
            check(ea.await("peer_up").second == b.address()) { "peer_up of another node" }
            eb.await("peer_up")
            // Status and peers as Kotlin properties.
            val st = a.status()
            check(st.address == a.address() && st.publicKey == a.publicKey()) { "status: $st" }
            check(st.peersUp == 1) { "peers up: ${st.peersUp}" }
            val p = a.peers().single { it.isUp }
            check(p.address == b.address() && p.uri == peer) { "peer: $p" }
            // A → B: an echo request; B's stack is this test: it answers.
            val (sa, sb) = addr(a.address()) to addr(b.address())
            var replied = false
            for (seq in 1..20) {
                check(a.sendPacket(echo(128, sa, sb, seq, "kotlin".toByteArray()))) { "queue full" }
                val req = inB.poll(500, TimeUnit.MILLISECONDS) ?: continue
                check(isEcho(req, 128, seq)) { "B got something else" }
                check(b.sendPacket(echo(129, sb, sa, seq, "kotlin".toByteArray()))) { "queue full" }
                val rep = inA.poll(2, TimeUnit.SECONDS)
                check(rep != null && isEcho(rep, 129, seq)) { "no reply at A" }
                replied = true
                break
            }
            check(replied) { "no echo request reached B" }
            // The network changed: the node binds again (protected again), same port.
            val before = sockets.size
            val portBefore = port(a)
            a.networkChanged()
            check(sockets.size > before) { "not protected again" }
            check(port(a) == portBefore) { "port changed" }
            a.stop()
            check(ea.await("stopped").second == null) { "stopped with an error" }
            // Bad calls: exceptions with codes, caught as Kotlin code catches them.
            val e = runCatching { a.status() }.exceptionOrNull()
            check(e is PlanetaryException && e.code == PlanetaryException.Code.NOT_RUNNING) { "$e" }
            a.setSocketProtector({ _, _ -> false }, true)
            val refused = runCatching { a.startPacketMode { } }.exceptionOrNull()
            check(refused is PlanetaryException && refused.code == PlanetaryException.Code.START_FAILED &&
                refused.message!!.contains("refused the UDP socket")) { "$refused" }
            check(runCatching { a.sendPacket(ByteArray(0)) }.exceptionOrNull() is IllegalStateException) {
                "a PlanetaryException is an IllegalStateException"
            }
        }
    }
}

fun main(args: Array<String>) {
    scratch = Paths.get(args[0])
    try {
        val t0 = System.nanoTime()
        echoBetweenTwoNodes()
        println("ok kotlin (${(System.nanoTime() - t0) / 1_000_000} ms)")
    } catch (t: Throwable) {
        t.printStackTrace()
        exitProcess(1)
    }
}
