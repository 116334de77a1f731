package main

import (
	"context"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"
)

// notifySystemd tells systemd (Type=notify) when the controller is ready,
// pets the watchdog while it is healthy, and says when it is stopping.
// Outside systemd (no NOTIFY_SOCKET) it does nothing.
func notifySystemd(ctx context.Context, log *zap.Logger, ready, healthy func() bool) {
	for !ready() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	if sent, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		log.Warn("cannot notify systemd", zap.Error(err))
	} else if !sent {
		return // not under systemd
	}
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval == 0 {
		<-ctx.Done()
		daemon.SdNotify(false, daemon.SdNotifyStopping)
		return
	}
	t := time.NewTicker(interval / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			daemon.SdNotify(false, daemon.SdNotifyStopping)
			return
		case <-t.C:
			// A stuck controller stops petting: systemd restarts it.
			if healthy() {
				daemon.SdNotify(false, daemon.SdNotifyWatchdog)
			} else {
				log.Error("not receiving from SQS; letting the systemd watchdog restart the controller")
			}
		}
	}
}
