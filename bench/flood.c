/* Bounded packet generator for wgroam's capture benchmark (bench/hub.sh).
 *
 * Sends IPv4 packets through a raw socket (IP_HDRINCL) with sendmmsg(2) at a target
 * rate for a fixed time, then prints what it achieved. Two kinds:
 *   other  non-WireGuard traffic: UDP to ports 1024..50999 (never 51820), sizes
 *          60..1200 bytes, and TCP ACK segments to ports 80/443, 3:1.
 *   wgjunk UDP to 51820 shaped like handshake initiations (type 1, 148 bytes) with
 *          a random (wrong) mac1: what passes a WireGuard capture filter.
 *   spoofed as wgjunk, but every packet from another source: addresses
 *          203.0.113.1..254 (documentation range) times ports 1024..65535, in turn
 *          (UDP checksum 0, allowed for IPv4; the kernel fills the IP checksum).
 * The source is SRC; DST must be a lab address. 256 distinct packets with correct
 * checksums are built once and sent round-robin. With FLOOD_PAYLOADS=FILE in the
 * environment, the 256 payloads of wgjunk/spoofed come from FILE (256 x 148 bytes),
 * e.g. initiation-shaped garbage with a valid mac1 for the hub's key (its writer
 * knows the hub's public key; the flood generator need not know BLAKE2s).
 *
 * usage: flood SRC DST PPS SECONDS other|wgjunk|spoofed
 * prints: "sent N packets in S s: P pps"
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define POOL 256
#define BATCH 64
#define MAXLEN 1228

static uint8_t pkt[POOL][MAXLEN];
static uint8_t given[POOL][148]; /* FLOOD_PAYLOADS */
static int have_given;
static size_t len[POOL];

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint32_t sum16(const void *p, size_t n, uint32_t s) {
  const uint8_t *b = p;
  for (; n > 1; n -= 2, b += 2) s += (uint32_t)(b[0] << 8 | b[1]);
  if (n) s += (uint32_t)(b[0] << 8);
  return s;
}

static uint16_t fold(uint32_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return htons((uint16_t)~s);
}

/* Transport checksum over the IPv4 pseudo header. */
static uint16_t l4sum(const struct iphdr *ip, const void *l4, size_t n) {
  uint32_t s = sum16(&ip->saddr, 8, 0);
  s += ip->protocol + (uint32_t)n;
  return fold(sum16(l4, n, s));
}

static void build(int i, in_addr_t src, in_addr_t dst, int wgjunk) {
  uint8_t *p = pkt[i];
  struct iphdr *ip = (struct iphdr *)p;
  size_t payload;
  memset(p, 0, MAXLEN);
  ip->version = 4;
  ip->ihl = 5;
  ip->ttl = 64;
  ip->id = htons((uint16_t)i);
  ip->saddr = src;
  ip->daddr = dst;
  if (wgjunk || i % 4 != 3) {
    struct udphdr *u = (struct udphdr *)(p + 20);
    uint8_t *d = p + 28;
    ip->protocol = IPPROTO_UDP;
    u->source = htons((uint16_t)(20000 + i));
    if (wgjunk) {
      payload = 148;
      u->dest = htons(51820);
      d[0] = 1; /* type 1, reserved zero */
      for (size_t k = 4; k < payload; k++) d[k] = (uint8_t)rand();
      if (have_given) memcpy(d, given[i], payload);
    } else {
      payload = 32 + (size_t)(i * 37) % 1140;
      u->dest = htons((uint16_t)(1024 + (i * 197) % 50000));
      for (size_t k = 0; k < payload; k++) d[k] = (uint8_t)rand();
    }
    u->len = htons((uint16_t)(8 + payload));
    u->check = l4sum(ip, u, 8 + payload);
    len[i] = 28 + payload;
  } else {
    struct tcphdr *t = (struct tcphdr *)(p + 20);
    ip->protocol = IPPROTO_TCP;
    payload = (size_t)(i * 53) % 1000;
    t->source = htons((uint16_t)(33000 + i));
    t->dest = htons(i % 2 ? 443 : 80);
    t->seq = htonl((uint32_t)rand());
    t->ack_seq = htonl((uint32_t)rand());
    t->doff = 5;
    t->ack = 1;
    t->psh = payload > 0;
    t->window = htons(502);
    for (size_t k = 0; k < payload; k++) p[40 + k] = (uint8_t)rand();
    t->check = l4sum(ip, t, 20 + payload);
    len[i] = 40 + payload;
  }
  ip->tot_len = htons((uint16_t)len[i]);
  ip->check = fold(sum16(ip, 20, 0));
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: flood SRC DST PPS SECONDS other|wgjunk|spoofed\n");
    return 2;
  }
  in_addr_t src = inet_addr(argv[1]), dst = inet_addr(argv[2]);
  double pps = atof(argv[3]), secs = atof(argv[4]);
  int spoofed = strcmp(argv[5], "spoofed") == 0;
  int wgjunk = spoofed || strcmp(argv[5], "wgjunk") == 0;
  if (src == INADDR_NONE || dst == INADDR_NONE || pps <= 0 || secs <= 0 || secs > 120 ||
      (!wgjunk && strcmp(argv[5], "other") != 0)) {
    fprintf(stderr, "flood: bad arguments\n");
    return 2;
  }
  const char *file = getenv("FLOOD_PAYLOADS");
  if (file && *file) {
    FILE *f = fopen(file, "rb");
    if (!f || fread(given, 148, POOL, f) != POOL) {
      fprintf(stderr, "flood: FLOOD_PAYLOADS: need %d x 148 bytes in %s\n", POOL, file);
      return 2;
    }
    fclose(f);
    have_given = 1;
  }
  srand(42);
  for (int i = 0; i < POOL; i++) build(i, src, dst, wgjunk);

  int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
  if (fd < 0) {
    perror("flood: socket");
    return 1;
  }
  int sndbuf = 4 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf) != 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);

  struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = dst};
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  unsigned long sent = 0, errors = 0, seq = 0;
  size_t next = 0;
  double start = now(), end = start + secs;
  for (;;) {
    double t = now();
    if (t >= end) break;
    /* Packets due by now at the target rate. */
    unsigned long due = (unsigned long)((t - start) * pps);
    if (sent >= due) {
      struct timespec ts = {0, 200000}; /* 0.2 ms */
      nanosleep(&ts, NULL);
      continue;
    }
    unsigned long want = due - sent;
    int n = want > BATCH ? BATCH : (int)want;
    for (int k = 0; k < n; k++) {
      size_t i = (next + (size_t)k) % POOL;
      if (spoofed) {
        struct iphdr *ip = (struct iphdr *)pkt[i];
        struct udphdr *u = (struct udphdr *)(pkt[i] + 20);
        unsigned long s = seq++;
        ip->saddr = htonl(0xcb007100u | (uint32_t)(1 + s % 254)); /* 203.0.113.x */
        u->source = htons((uint16_t)(1024 + (s / 254) % 64512));
        u->check = 0;
      }
      iov[k].iov_base = pkt[i];
      iov[k].iov_len = len[i];
      memset(&msgs[k].msg_hdr, 0, sizeof msgs[k].msg_hdr);
      msgs[k].msg_hdr.msg_name = &to;
      msgs[k].msg_hdr.msg_namelen = sizeof to;
      msgs[k].msg_hdr.msg_iov = &iov[k];
      msgs[k].msg_hdr.msg_iovlen = 1;
    }
    int r = sendmmsg(fd, msgs, (unsigned)n, 0);
    if (r < 0) {
      if (errno == ENOBUFS || errno == EAGAIN || errno == EINTR) {
        errors++;
        continue;
      }
      perror("flood: sendmmsg");
      return 1;
    }
    sent += (unsigned long)r;
    next = (next + (size_t)r) % POOL;
  }
  double took = now() - start;
  printf("sent %lu packets in %.2f s: %.0f pps (%lu send errors)\n", sent, took, sent / took,
         errors);
  return 0;
}
