package controller

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// health is what /healthz and /readyz (and systemd's watchdog) report.
type health struct {
	now func() time.Time

	mu       sync.Mutex
	ready    bool      // records resumed, receiving
	standby  bool      // waiting for another controller's lease
	lastPoll time.Time // when a receive last returned
}

func (h *health) setReady() {
	h.mu.Lock()
	h.ready, h.lastPoll = true, h.now()
	h.mu.Unlock()
}

// polled notes that a long poll returned.
func (h *health) polled() {
	h.mu.Lock()
	h.lastPoll = h.now()
	h.mu.Unlock()
}

func (h *health) setStandby(v bool) {
	h.mu.Lock()
	h.standby = v
	h.mu.Unlock()
}

// Healthy reports whether the controller is still receiving: a long poll
// returns at least every 20 s, so a minute without one means it is stuck.
func (c *Controller) Healthy() bool {
	h := c.health
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.ready || h.now().Sub(h.lastPoll) < time.Minute
}

// Ready reports whether the controller has resumed its records and is receiving.
func (c *Controller) Ready() bool {
	c.health.mu.Lock()
	defer c.health.mu.Unlock()
	return c.health.ready
}

// Standby reports whether the controller waits for another's lease.
func (c *Controller) Standby() bool {
	c.health.mu.Lock()
	defer c.health.mu.Unlock()
	return c.health.standby
}

// Serve exposes /metrics, /healthz (receiving from SQS) and /readyz
// (records resumed, receiving events) on addr until ctx is cancelled.
func (c *Controller) Serve(ctx context.Context, addr string, gatherer prometheus.Gatherer) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !c.Healthy() {
			http.Error(w, "unhealthy: no SQS receive has returned for a minute", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if c.Standby() {
			http.Error(w, "standing by: another controller holds the lease", http.StatusServiceUnavailable)
			return
		}
		if !c.Ready() {
			http.Error(w, "not ready: resuming records", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	c.log.Info("serving metrics and health", zap.String("address", ln.Addr().String()))
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
