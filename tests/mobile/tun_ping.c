/*
 * An app as Android's VpnService would run it, in C: make a node, open a TUN device and give
 * it the node's address (as VpnService.Builder does), hand the descriptor to pl_node_start,
 * wait for the link, then ping a meshd node through it.
 *
 * usage: tun_ping CONFIG_JSON TARGET_ADDRESS [COMMAND]
 * Exit 0 when the ping was answered (or, with COMMAND, when that shell command, run instead of
 * the ping once the link is up, succeeded: bench/mobile.sh runs iperf3 so). Built and run by
 * tests/tests/mobile.rs.
 */
#include "planetary_lan.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static void on_log(void *ctx, int32_t level, const char *message) {
    (void)ctx;
    if (level <= 3) fprintf(stderr, "[log %d] %s\n", level, message);
}

static _Atomic int ready;

static void on_event(void *ctx, const char *event_json) {
    (void)ctx;
    if (strstr(event_json, "\"event\":\"ready\"")) ready = 1;
    fprintf(stderr, "[event] %s\n", event_json);
}

static int fail(const char *what, PlStatus s) {
    char msg[512];
    pl_last_error(msg, sizeof msg);
    fprintf(stderr, "%s failed: %s: %s\n", what, pl_status_name(s), msg);
    return 1;
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s CONFIG_JSON TARGET_ADDRESS [COMMAND]\n", argv[0]);
        return 2;
    }
    fprintf(stderr, "libplanetary_lan %s\n", pl_version());
    PlNode node = 0;
    PlStatus s = pl_node_new(argv[1], on_log, on_event, NULL, &node);
    if (s != PL_OK) return fail("pl_node_new", s);
    char *addr = NULL;
    if ((s = pl_node_address(node, &addr)) != PL_OK) return fail("pl_node_address", s);

    /* What VpnService.Builder.establish() does for an Android app. */
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) { perror("/dev/net/tun"); return 1; }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    strncpy(ifr.ifr_name, "pltun0", IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) { perror("TUNSETIFF"); return 1; }
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "ip link set dev pltun0 mtu 1280 up && ip -6 addr add %s/7 dev pltun0 nodad", addr);
    if (system(cmd) != 0) { fprintf(stderr, "%s failed\n", cmd); return 1; }

    if ((s = pl_node_start(node, fd)) != PL_OK) return fail("pl_node_start", s);
    /* The node works on its own duplicate: the app may close its copy. */
    close(fd);
    if (!ready) { fprintf(stderr, "no ready event before pl_node_start returned\n"); return 1; }

    int up = 0;
    for (int i = 0; i < 100 && !up; i++) {
        char *peers = NULL;
        if ((s = pl_node_peers_json(node, &peers)) != PL_OK) return fail("pl_node_peers_json", s);
        up = strstr(peers, "\"state\":\"up\"") != NULL;
        pl_string_free(peers);
        if (!up) sleep_ms(100);
    }
    if (!up) { fprintf(stderr, "no link came up within 10 s\n"); return 1; }

    int rc = 1;
    snprintf(cmd, sizeof cmd, "ping -6 -n -c 3 -i 0.2 -W 2 %s", argv[2]);
    for (int attempt = 0; attempt < 5 && rc != 0; attempt++) rc = system(cmd);
    if (rc == 0 && argc == 4) {
        rc = system(argv[3]);
        printf(rc == 0 ? "COMMAND OK\n" : "COMMAND FAILED\n");
    }

    char *status = NULL;
    if ((s = pl_node_status_json(node, &status)) != PL_OK) return fail("pl_node_status_json", s);
    fprintf(stderr, "status: %s\n", status);
    pl_string_free(status);
    pl_string_free(addr);
    if ((s = pl_node_stop(node)) != PL_OK) return fail("pl_node_stop", s);
    if ((s = pl_node_free(node)) != PL_OK) return fail("pl_node_free", s);
    printf(rc == 0 ? "PING OK\n" : "PING FAILED\n");
    return rc == 0 ? 0 : 1;
}
