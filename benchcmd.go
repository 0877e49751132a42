package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/heraldchat/herald/internal/bench"
)

// benchCmd is `herald bench`: a load generator for any Herald URL. It
// resolves the secret the server uses like `herald token` does, then hands
// the run to bench.Run.
func benchCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, cfg, err := configFlags("bench", getenv, stderr, secretFlags...)
	if err != nil {
		return err
	}
	var (
		o                    bench.Options
		urls, pids, jsonPath string
		cpuProfile           string
	)
	fs.StringVar(&urls, "url", "http://127.0.0.1:8080", "base `URL` of the server under test, or comma-separated URLs of the instances of a cluster: "+
		"each room's streams take them in turn, and publishers post through another instance than the room's first stream reads from")
	fs.IntVar(&o.Streams, "streams", 1000, "subscriber streams, one user each")
	fs.IntVar(&o.Rooms, "rooms", 1, "rooms; the streams are spread evenly over them")
	fs.IntVar(&o.Publishers, "publishers", 1, "posting clients, spread over the rooms")
	fs.Float64Var(&o.Rate, "rate", 0, "total posts per second (0: flat out, each publisher posting back to back)")
	fs.IntVar(&o.Size, "size", 100, "bytes of message text")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "how long to post (with --idle: to hold the streams open)")
	fs.StringVar(&jsonPath, "json", "", "write the final report as JSON to this file")
	fs.StringVar(&pids, "pid", "", "`PID` of the server, or comma-separated PIDs of its instances: report CPU time and memory from /proc (with several: summed, then each one's)")
	fs.IntVar(&o.Sources, "sources", 0, fmt.Sprintf("loopback source addresses 127.0.0.1..N to spread the streams over (default: 1 per %d streams on a loopback server, else 1)", bench.StreamsPerSource))
	fs.BoolVar(&o.Idle, "idle", false, "connect the streams and post nothing: connect time and server memory per stream")
	fs.StringVar(&o.Prefix, "prefix", "", "prefix of user and room names, so runs don't collide (default: bench-RANDOM)")
	fs.StringVar(&o.Target, "target", bench.TargetHerald, "the server's kind: herald, or centrifugo to compare with (streams on its uni-SSE endpoint, subscribed by their connect token; posts through its HTTP API; --jwt-secret is its client.token.hmac_secret_key)")
	fs.StringVar(&o.APIKey, "api-key", "", "with --target centrifugo: its http_api.key")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the generator itself to this `FILE` (go tool pprof), to see what it spends per delivery")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: herald bench [--url U[,U...]] [--streams N] [--rooms M] [--publishers K] [--rate R] [--size B] [--duration D] [--json FILE] [--pid PID[,PID...]] [--idle] [--target centrifugo --api-key K] [--cpuprofile FILE]")
		fmt.Fprintln(stderr, "The secret is found like the server finds it: --jwt-secret, HERALD_JWT_SECRET, or DATA_DIR/jwt-secret.")
		printFlags(stderr, fs)
	}
	rest, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("unexpected argument %q", rest[0])
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	for _, u := range strings.Split(urls, ",") {
		o.URLs = append(o.URLs, strings.TrimSpace(u))
	}
	if pids != "" {
		for _, p := range strings.Split(pids, ",") {
			pid, err := strconv.Atoi(strings.TrimSpace(p))
			if err != nil {
				return fmt.Errorf("--pid must be a PID or comma-separated PIDs, not %q", pids)
			}
			o.PIDs = append(o.PIDs, pid)
		}
	}
	// Checked before the secret is resolved, which may create one.
	if err := o.Check(); err != nil {
		return err
	}
	secret, generated, err := loadSecret(*cfg)
	if err != nil {
		return err
	}
	if generated {
		announceSecret(stderr, "bench", *cfg)
	}
	o.Secret = secret
	o.Progress = stderr

	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	report, err := bench.Run(ctx, o)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	report.Print(stdout)
	if jsonPath != "" {
		return report.WriteJSON(jsonPath)
	}
	return nil
}
