/*
 * LD_PRELOAD shim for the Java RocketMQ servers started by scripts/rocketmq-local.sh.
 *
 * The broker's HA listener (master side, listenPort+1) binds the wildcard address and has no
 * bind option in 4.9.x or 5.3.x; everything else has one (bindAddress). This shim turns any
 * bind() to 0.0.0.0 or :: into a bind to 127.0.0.1 (or ::ffff:127.0.0.1 on a dual-stack IPv6
 * socket, which is what the JVM opens), so nothing the servers open is reachable from another
 * address. Other addresses pass through unchanged.
 *
 * Build: cc -shared -fPIC -O2 -o bind-loopback.so bind-loopback.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

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
