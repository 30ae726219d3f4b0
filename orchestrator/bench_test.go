package orchestrator

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// benchEngine opens a real bbolt file in b.TempDir(); noSync skips fsync
// (bbolt's default fsyncs twice per Update, which dominates at ~ms).
func benchEngine(b *testing.B, noSync bool, opts ...Option) (*Engine, string) {
	path := filepath.Join(b.TempDir(), "bench.db")
	db := openDB(b, path, noSync)
	b.Cleanup(func() { db.Close() })
	e, err := Open(db, opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { closeEngine(b, e) })
	return e, path
}

// BenchmarkOnRequest measures the request hot path on a file with fsync on,
// as in production: serially on one function, and in parallel with several
// workers spread over several functions. The timed loop includes the
// background flushes that fall inside it, so the figure is amortised.
func BenchmarkOnRequest(b *testing.B) {
	const fns = 8
	for _, strategy := range []string{StrategyRequestCentric, StrategyBandit} {
		b.Run(strategy+"/serial", func(b *testing.B) {
			e, _ := benchEngine(b, false)
			ctx := context.Background()
			mustConfigure(b, e, "ns/f", cfgOf(strategy, 0))
			w := Worker{ID: "w"}
			b.ReportAllocs()
			for b.Loop() {
				if w.Lineage >= 99 {
					w = Worker{ID: "w"}
				}
				if _, err := e.OnRequest(ctx, "ns/f", &w, 1500*time.Microsecond); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("%s/parallel-%dfns", strategy, fns), func(b *testing.B) {
			e, _ := benchEngine(b, false)
			ctx := context.Background()
			names := make([]string, fns)
			for i := range names {
				names[i] = fmt.Sprint("ns/f", i)
				mustConfigure(b, e, names[i], cfgOf(strategy, 0))
			}
			var next atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(8) // 8 x GOMAXPROCS reporting workers
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				fn := names[int(next.Add(1))%fns]
				w := Worker{}
				for pb.Next() {
					if w.Lineage >= 99 {
						w = Worker{}
					}
					if _, err := e.OnRequest(ctx, fn, &w, time.Duration(500+w.Lineage)*time.Microsecond); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
func BenchmarkOnStart(b *testing.B) {
	for _, strategy := range []string{StrategyFixed, StrategyRequestCentric, StrategyBandit} {
		for _, noSync := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/nosync=%v", strategy, noSync), func(b *testing.B) {
				e, _ := benchEngine(b, noSync)
				ctx := context.Background()
				c := cfgOf(strategy, 20)
				c.PoolCapacity = 12
				mustConfigure(b, e, "ns/f", c)
				// A learned curve and a full pool (12 snapshots).
				w := Worker{}
				for range 99 {
					e.OnRequest(ctx, "ns/f", &w, time.Duration(2000-w.Lineage*10)*time.Microsecond)
				}
				for i := range 12 {
					e.Register(ctx, "ns/f", Snapshot{Key: fmt.Sprint("s", i), RequestNumber: 1 + i*8})
				}
				b.ReportAllocs()
				for b.Loop() {
					if _, err := e.OnStart(ctx, "ns/f", "w"); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkFileSize100k reports the bbolt file size after 100k OnRequest
// calls (NoSync so it finishes in seconds; the file layout is the same).
func BenchmarkFileSize100k(b *testing.B) {
	for _, strategy := range []string{StrategyRequestCentric, StrategyBandit} {
		b.Run(strategy, func(b *testing.B) {
			for b.Loop() {
				e, path := benchEngine(b, true)
				ctx := context.Background()
				mustConfigure(b, e, "ns/f", cfgOf(strategy, 20))
				var w Worker
				for range 100000 {
					plan := w.ID == ""
					if plan {
						p, err := e.OnStart(ctx, "ns/f", "w")
						if err != nil {
							b.Fatal(err)
						}
						w = p.Worker
						w.ID = "w"
					}
					act, err := e.OnRequest(ctx, "ns/f", &w, time.Duration(2000-min(w.Lineage, 99)*10)*time.Microsecond)
					if err != nil {
						b.Fatal(err)
					}
					if act.Evict {
						w = Worker{}
					}
				}
				fi, err := os.Stat(path)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(fi.Size()), "file-bytes")
			}
		})
	}
}
