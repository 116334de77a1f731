package controller

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/controller/event"
	"github.com/spotrescue/spotrescue/state"
)

// A scheduled change is looked for again this soon at the earliest, and
// this late at the latest (a change another controller recorded while this
// one stood by); in between, when the next one is due.
const (
	scheduleEvery = 5 * time.Second
	scheduleIdle  = 10 * time.Minute
)

// schedules keeps what the controller does ahead of time, in the state
// table so that it outlives restarts and failovers: AWS Health scheduled
// changes (recorded by onScheduledChange days ahead; when one is Reclaim
// away, the jobs still running on its instance are rescued as a Spot
// warning would: hold, upload by the change's time, requeue) and the end
// of a requeued job's steering (steer.go). It reads the table when
// something is due or newly recorded, not on every tick.
func (in *intake) schedules(ctx context.Context) {
	for {
		t := time.NewTimer(in.fireDue(ctx))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-in.scheduled:
			t.Stop()
		}
	}
}

// fireDue starts the rescue of every schedule within Reclaim of its time,
// forgets those whose time has passed, and says when to look again.
func (in *intake) fireDue(ctx context.Context) time.Duration {
	scs, err := in.records.store.Schedules(ctx, in.opts.Cluster)
	if err != nil {
		in.log.Warn("cannot list scheduled changes; trying again", zap.Error(err))
		return scheduleEvery
	}
	now := in.now()
	wait := scheduleIdle
	for _, sc := range scs {
		if sc.Lift != nil {
			wait = min(wait, in.fireLift(ctx, sc, now))
			continue
		}
		log := in.log.With(zap.String("event", sc.Event), zap.String("instance", sc.Instance), zap.String("change", sc.Code), zap.Time("scheduled", sc.Due))
		switch {
		case now.After(sc.Due):
			log.Warn("scheduled change passed before it could be acted on")
		case now.Before(sc.Due.Add(-Reclaim)):
			wait = min(wait, max(sc.Due.Add(-Reclaim).Sub(now), scheduleEvery))
			continue
		default:
			// The same path as EC2's warning, with the change's time as
			// the reclaim time: the deadline is the change minus the margin.
			w := event.Event{ID: "health:" + sc.Event, Kind: event.SpotInterruption, Time: sc.Due.Add(-Reclaim),
				Region: in.opts.Region, Instance: sc.Instance, Action: "terminate"}
			log.Info("scheduled change due: rescuing the instance's jobs")
			if err := in.onWarnings(ctx, []event.Event{w}, now)[0]; err != nil {
				log.Warn("rescue for the scheduled change not started; trying again", zap.Error(err))
				wait = scheduleEvery
				continue
			}
		}
		if err := in.records.store.DeleteSchedule(ctx, in.opts.Cluster, sc.ID()); err != nil {
			log.Warn("cannot forget the scheduled change", zap.Error(err))
		}
	}
	return wait
}

// liftGiveUp bounds how long a lift Slurm keeps refusing is retried.
const liftGiveUp = time.Hour

// fireLift gives a steered job its exclusions back when the steering is
// over (steer.go), and says when to look again for it.
func (in *intake) fireLift(ctx context.Context, sc state.Schedule, now time.Time) time.Duration {
	if now.Before(sc.Due) {
		return max(sc.Due.Sub(now), scheduleEvery)
	}
	log := in.log.With(zap.String("job", sc.Lift.JobID), zap.Int("run", sc.Lift.Run))
	if err := in.steps.lift(ctx, sc.Lift); err != nil && now.Before(sc.Due.Add(liftGiveUp)) {
		log.Warn("cannot lift the job's steering yet; trying again", zap.Error(err))
		return scheduleEvery
	} else if err != nil {
		log.Error("gave up lifting the job's steering; its excluded nodes stay as spotrescue set them", zap.Error(err))
	}
	if err := in.records.store.DeleteSchedule(ctx, in.opts.Cluster, sc.ID()); err != nil {
		log.Warn("cannot forget the lift", zap.Error(err))
	}
	return scheduleIdle
}

// schedule records a scheduled change of one of our instances.
func (in *intake) schedule(ctx context.Context, e event.Event, instance string) error {
	err := in.records.store.PutSchedule(ctx, in.opts.Cluster, state.Schedule{Instance: instance, Event: e.ID, Code: e.Code, Due: e.Scheduled})
	if err == nil {
		wakeSchedules(in.scheduled)
	}
	return err
}

// wakeSchedules tells the schedules loop that a schedule was recorded.
func wakeSchedules(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default: // a look is already pending
	}
}
