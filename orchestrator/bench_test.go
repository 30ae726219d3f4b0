package orchestrator

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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
	return e, path
}

func BenchmarkOnRequest(b *testing.B) {
	for _, strategy := range []string{StrategyRequestCentric, StrategyBandit} {
		for _, noSync := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/nosync=%v", strategy, noSync), func(b *testing.B) {
				e, _ := benchEngine(b, noSync)
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
		}
	}
}

// BenchmarkOnRequestParallel compares Update with db.Batch under many
// concurrent reporters (fsync on).
func BenchmarkOnRequestParallel(b *testing.B) {
	for _, batch := range []bool{false, true} {
		b.Run(fmt.Sprintf("batch=%v", batch), func(b *testing.B) {
			var opts []Option
			if batch {
				opts = append(opts, WithBatch())
			}
			e, _ := benchEngine(b, false, opts...)
			ctx := context.Background()
			mustConfigure(b, e, "ns/f", cfgOf(StrategyRequestCentric, 0))
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				w := Worker{}
				for pb.Next() {
					if w.Lineage >= 99 {
						w = Worker{}
					}
					if _, err := e.OnRequest(ctx, "ns/f", &w, time.Millisecond); err != nil {
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
