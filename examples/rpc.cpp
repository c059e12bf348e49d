// Request/response: a server process answers "math/square" calls; the client calls it with a deadline.
// The request is written in place (zero-copy loan); several servers on one service share the load. If the
// server dies while handling a call, the call fails at once with kServerDied. Run with a daemon: example_rpc
#include <shmbus/bus.h>
#include <shmbus/rpc.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

using namespace std::chrono_literals;

int serve() {
  auto bus = shmbus::Bus::connect().value();
  auto server = bus.server("math/square").value();
  for (;;) {
    auto request = server.receive(5s);
    if (!request) return 0;
    int64_t x = 0;
    std::memcpy(&x, request->bytes().data(), sizeof x);
    const int64_t y = x * x;
    (void)request->respond(std::as_bytes(std::span(&y, 1)));
  }
}

int main() {
  auto bus = shmbus::Bus::connect();
  if (!bus) return std::fprintf(stderr, "rpc: %s\n", bus.status().to_string().c_str()), 1;
  auto client = bus->client("math/square");
  if (!client) return std::fprintf(stderr, "rpc: %s\n", client.status().to_string().c_str()), 1;
  const pid_t server = fork();
  if (server == 0) _exit(serve());
  for (int64_t x = 1; x <= 5; ++x) {
    auto loan = client->loan().value();  // the request, written in place in shared memory
    std::memcpy(loan.data(), &x, sizeof x);
    loan.set_size(sizeof x);
    auto response = client->call(std::move(loan), 1s);
    if (!response) return std::fprintf(stderr, "rpc: %s\n", response.status().to_string().c_str()), 1;
    int64_t y = 0;
    std::memcpy(&y, response->bytes().data(), sizeof y);
    std::printf("%lld squared is %lld\n", static_cast<long long>(x), static_cast<long long>(y));
  }
  kill(server, SIGTERM);
  waitpid(server, nullptr, 0);
  return 0;
}
