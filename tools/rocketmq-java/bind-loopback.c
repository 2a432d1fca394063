/*
 * LD_PRELOAD shim for the Java RocketMQ servers started by scripts/rocketmq-local.sh.
 *
 * The broker's HA listener (master side, listenPort+1) binds the wildcard address and has no
 * bind option in 4.9.x or 5.3.x; everything else has one (bindAddress). This shim turns any
 * bind() to 0.0.0.0 or :: into a bind to 127.0.0.1 (or ::ffff:127.0.0.1 on a dual-stack IPv6
 * socket, which is what the JVM opens), so nothing the servers open is reachable from another
 * address. Other addresses pass through unchanged.
 *
 * It also refuses (ECONNREFUSED, nothing sent) every connect() to an address outside
 * 127.0.0.0/8 and ::1: the 5.x name server dials its own non-loopback address (NetworkUtil.
 * getLocalAddress() + its port) every few seconds, and a test peer has no business reaching
 * anything but loopback anyway.
 *
 * Build: cc -shared -fPIC -O2 -o bind-loopback.so bind-loopback.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include <errno.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);
typedef int (*connect_fn)(int, const struct sockaddr *, socklen_t);

static int is_loopback(const struct sockaddr *addr, socklen_t len) {
    if (addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in a;
        memcpy(&a, addr, sizeof a);
        return (ntohl(a.sin_addr.s_addr) >> 24) == 127;
    }
    if (addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 a;
        memcpy(&a, addr, sizeof a);
        if (memcmp(&a.sin6_addr, &in6addr_loopback, sizeof a.sin6_addr) == 0) return 1;
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        return memcmp(a.sin6_addr.s6_addr, mapped, 12) == 0 && a.sin6_addr.s6_addr[12] == 127;
    }
    return 0;
}

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    static connect_fn real_connect;
    if (!real_connect) real_connect = (connect_fn)dlsym(RTLD_NEXT, "connect");
    if (addr && (addr->sa_family == AF_INET || addr->sa_family == AF_INET6) &&
        !is_loopback(addr, len)) {
        errno = ECONNREFUSED;
        return -1;
    }
    return real_connect(fd, addr, len);
}

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static bind_fn real_bind;
    if (!real_bind) real_bind = (bind_fn)dlsym(RTLD_NEXT, "bind");
    if (addr && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in a;
        memcpy(&a, addr, sizeof a);
        if (a.sin_addr.s_addr == htonl(INADDR_ANY)) {
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return real_bind(fd, (const struct sockaddr *)&a, sizeof a);
        }
    } else if (addr && addr->sa_family == AF_INET6 &&
               len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 a;
        memcpy(&a, addr, sizeof a);
        if (memcmp(&a.sin6_addr, &in6addr_any, sizeof a.sin6_addr) == 0) {
            /* ::ffff:127.0.0.1 — IPv4 loopback through the dual-stack socket. */
            memset(&a.sin6_addr, 0, sizeof a.sin6_addr);
            a.sin6_addr.s6_addr[10] = 0xff;
            a.sin6_addr.s6_addr[11] = 0xff;
            a.sin6_addr.s6_addr[12] = 127;
            a.sin6_addr.s6_addr[15] = 1;
            return real_bind(fd, (const struct sockaddr *)&a, sizeof a);
        }
    }
    return real_bind(fd, addr, len);
}
