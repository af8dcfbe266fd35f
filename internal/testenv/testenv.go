// Package testenv starts the real components integration tests run
// against: a Redis container through testcontainers-go, and the local
// Docker engine.
//
// Tests need the images from `make images` and an engine; `make test`
// provides both. The Ryuk reaper is not used (its image cannot be pulled
// without a registry), so every container is removed with t.Cleanup.
package testenv

import (
	"context"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	dockercontainer "github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	goredis "github.com/redis/go-redis/v9"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/runbox/runbox/pkg/sandbox"
)

// RedisImage is built by `make images` from deployments/support/redis.
const RedisImage = "runbox/redis:latest"

func init() {
	// The reaper image cannot be pulled here; t.Cleanup removes containers.
	if os.Getenv("TESTCONTAINERS_RYUK_DISABLED") == "" {
		os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
	// Published ports are reached on loopback. Without this testcontainers
	// may guess the default gateway as the engine's host.
	if os.Getenv("TESTCONTAINERS_HOST_OVERRIDE") == "" {
		os.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
	}
}

// Redis is a Redis server in a container of its own.
type Redis struct {
	Container testcontainers.Container
	// URL is a redis:// URL on the loopback address.
	URL string
}

// StartRedis starts a Redis container with the append-only file on and
// removes it when the test ends. Its host port is chosen by the engine and
// changes if the container is restarted.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	return startRedis(t, "")
}

// StartRedisFixedPort is StartRedis with a host port that stays the same
// when the container is stopped and started again, so clients reconnect to
// the same address. The container keeps its data across such a restart.
func StartRedisFixedPort(t testing.TB) *Redis {
	t.Helper()
	return startRedis(t, FreePort(t))
}

// FreePort returns a TCP port on 127.0.0.1 that was free when it was
// checked. Another process may take it before the caller binds it.
func FreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// startRedis starts Redis on the given loopback host port, or on one the
// engine picks when hostPort is "".
func startRedis(t testing.TB, hostPort string) *Redis {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req := testcontainers.ContainerRequest{
		Image:        RedisImage,
		ExposedPorts: []string{"6379/tcp"},
		WaitingFor:   wait.ForLog("Ready to accept connections").WithStartupTimeout(30 * time.Second),
	}
	if hostPort != "" {
		req.HostConfigModifier = func(hc *container.HostConfig) {
			hc.PortBindings = network.PortMap{
				network.MustParsePort("6379/tcp"): {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: hostPort}},
			}
		}
	}
	ctr, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
		ContainerRequest: req,
		Started:          true,
	})
	testcontainers.CleanupContainer(t, ctr)
	if err != nil {
		t.Fatalf("start redis container from %s (built by `make images`): %v", RedisImage, err)
	}
	port, err := ctr.MappedPort(ctx, "6379/tcp")
	if err != nil {
		t.Fatalf("read redis port: %v", err)
	}
	return &Redis{Container: ctr, URL: "redis://127.0.0.1:" + port.Port() + "/0"}
}

// Client returns a go-redis client connected to the server, closed when
// the test ends.
func (r *Redis) Client(t testing.TB) *goredis.Client {
	t.Helper()
	opts, err := goredis.ParseURL(r.URL)
	if err != nil {
		t.Fatalf("parse redis URL %q: %v", r.URL, err)
	}
	rdb := goredis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// Docker returns a client of the local engine, closed when the test ends.
func Docker(t testing.TB) *client.Client {
	t.Helper()
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("create docker client: %v", err)
	}
	t.Cleanup(func() { docker.Close() })
	if _, err := docker.Ping(context.Background()); err != nil {
		t.Fatalf("docker engine not reachable (`make test` starts it): %v", err)
	}
	return docker
}

// WaitForPoolContainers waits up to 30 s until the worker named worker has
// an idle pool container for the language, and returns its idle pool
// containers. It fails the test when none appears in time.
func WaitForPoolContainers(t testing.TB, docker *client.Client, worker, language string) []dockercontainer.Summary {
	t.Helper()
	idle := filters.NewArgs(filters.Arg("label", sandbox.LabelWorker+"="+worker),
		filters.Arg("label", sandbox.LabelPool+"="+language))
	deadline := time.Now().Add(30 * time.Second)
	for {
		pooled, err := docker.ContainerList(context.Background(), dockercontainer.ListOptions{Filters: idle})
		if err != nil {
			t.Fatalf("list pool containers: %v", err)
		}
		if len(pooled) > 0 {
			return pooled
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker %s has no idle %s pool container after 30 s", worker, language)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
