// A STOMP subscriber sink for the load generator (bench/native-sink.ts builds and runs it):
// COUNT connections to one broker over TCP, each CONNECTs and SUBSCRIBEs (ack:auto) and waits
// for its RECEIPT, then only counts NUL bytes — one per MESSAGE, since the bench's bodies are
// ASCII digits — reading every socket with epoll into one buffer. Node spends several
// microseconds per socket read; this about one, so that a bench sharing the broker's machine
// leaves the cores to the brokers it measures.
//
//   stomp-sink HOST PORT COUNT DESTINATION
//
// stdout: "ready" once every subscription is acknowledged; then "count TOTAL LOST" at most
// every 10 ms while the total changes; "lost INDEX REASON" when a connection ends; "error
// REASON" (and exit 1) when the set-up fails. Ends when stdin closes or on SIGTERM.

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_BYTES (256 * 1024)
#define HANDSHAKE_TIMEOUT_MS 30000
#define REPORT_EVERY_MS 10

static char buffer[READ_BYTES];

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fail(const char *what, const char *detail) {
  printf("error %s: %s\n", what, detail);
  fflush(stdout);
  exit(1);
}

static long long count_nuls(const char *bytes, size_t length) {
  long long nuls = 0;
  const char *at = bytes;
  const char *end = bytes + length;
  while (at < end) {
    const char *nul = memchr(at, 0, (size_t)(end - at));
    if (nul == NULL) break;
    nuls++;
    at = nul + 1;
  }
  return nuls;
}

/** The frame's command, after any heart-beat EOLs: does it start with `command`? */
static int frame_is(const char *frame, size_t length, const char *command) {
  size_t i = 0;
  while (i < length && (frame[i] == '\n' || frame[i] == '\r')) i++;
  size_t n = strlen(command);
  return length - i >= n && memcmp(frame + i, command, n) == 0 && (length - i == n || frame[i + n] == '\n' || frame[i + n] == '\r');
}

/** Read one connection's CONNECTED and RECEIPT; returns the NULs (MESSAGEs) already behind them. */
static long long handshake(int fd, int index) {
  static char pending[64 * 1024];
  size_t have = 0;
  int frames = 0;
  long long deadline = now_ms() + HANDSHAKE_TIMEOUT_MS;
  while (frames < 2) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    long long left = deadline - now_ms();
    if (left <= 0 || poll(&p, 1, (int)left) <= 0) fail("handshake", "no CONNECTED and RECEIPT in time");
    ssize_t got = recv(fd, pending + have, sizeof pending - have, 0);
    if (got <= 0) fail("handshake", got == 0 ? "connection closed by the broker" : strerror(errno));
    have += (size_t)got;
    // Consume whole frames from the front.
    for (;;) {
      char *nul = memchr(pending, 0, have);
      if (nul == NULL || frames == 2) break;
      size_t length = (size_t)(nul - pending);
      if (frames == 0 && !frame_is(pending, length, "CONNECTED")) {
        char reason[200];
        snprintf(reason, sizeof reason, "connection %d: expected CONNECTED, got %.120s", index, pending);
        fail("handshake", reason);
      }
      if (frames == 1 && !frame_is(pending, length, "RECEIPT")) {
        char reason[200];
        snprintf(reason, sizeof reason, "connection %d: expected RECEIPT, got %.120s", index, pending);
        fail("handshake", reason);
      }
      frames++;
      memmove(pending, nul + 1, have - length - 1);
      have -= length + 1;
    }
    if (frames < 2 && have == sizeof pending) fail("handshake", "a frame too long for the handshake");
  }
  return count_nuls(pending, have);
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: stomp-sink HOST PORT COUNT DESTINATION\n");
    return 64;
  }
  const char *host = argv[1];
  int port = atoi(argv[2]);
  int count = atoi(argv[3]);
  const char *destination = argv[4];
  if (port <= 0 || count <= 0) fail("usage", "PORT and COUNT must be positive");
  signal(SIGPIPE, SIG_IGN);

  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &address.sin_addr) != 1) fail("usage", "HOST must be an IPv4 address");

  int *fds = calloc((size_t)count, sizeof(int));
  if (fds == NULL) fail("memory", strerror(errno));
  long long total = 0;
  int lost = 0;

  // Every connection sends its CONNECT and SUBSCRIBE first, then the answers are read: the
  // handshakes overlap.
  for (int i = 0; i < count; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) fail("socket", strerror(errno));
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) fail("connect", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char frames[1024];
    int length = snprintf(frames, sizeof frames, "CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\n\n%cSUBSCRIBE\nid:0\ndestination:%s\nack:auto\nreceipt:sink-%d\n\n%c", 0, destination, i, 0);
    if (length <= 0 || (size_t)length >= sizeof frames) fail("usage", "DESTINATION too long");
    if (send(fd, frames, (size_t)length, 0) != length) fail("send", strerror(errno));
    fds[i] = fd;
  }
  for (int i = 0; i < count; i++) total += handshake(fds[i], i);

  int ep = epoll_create1(0);
  if (ep < 0) fail("epoll", strerror(errno));
  for (int i = 0; i < count; i++) {
    fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
    struct epoll_event event = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &event) != 0) fail("epoll", strerror(errno));
  }
  struct epoll_event stdin_event = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
  epoll_ctl(ep, EPOLL_CTL_ADD, STDIN_FILENO, &stdin_event);
  printf("ready\n");
  fflush(stdout);

  long long reported = -1;
  long long reported_at = 0;
  struct epoll_event events[256];
  for (;;) {
    int ready = epoll_wait(ep, events, 256, REPORT_EVERY_MS);
    if (ready < 0 && errno != EINTR) fail("epoll", strerror(errno));
    for (int e = 0; e < ready; e++) {
      uint32_t index = events[e].data.u32;
      if (index == UINT32_MAX) {
        char ignored[64];
        if (read(STDIN_FILENO, ignored, sizeof ignored) <= 0) return 0;
        continue;
      }
      int fd = fds[index];
      for (;;) {
        ssize_t got = recv(fd, buffer, READ_BYTES, 0);
        if (got > 0) {
          total += count_nuls(buffer, (size_t)got);
          if (got < READ_BYTES) break;
          continue;
        }
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (got < 0 && errno == EINTR) continue;
        printf("lost %u %s\n", index, got == 0 ? "connection closed by the broker" : strerror(errno));
        fflush(stdout);
        lost++;
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
        close(fd);
        break;
      }
    }
    long long now = now_ms();
    if (total != reported && now - reported_at >= REPORT_EVERY_MS) {
      printf("count %lld %d\n", total, lost);
      fflush(stdout);
      reported = total;
      reported_at = now;
    }
  }
}
