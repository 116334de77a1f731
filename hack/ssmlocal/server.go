package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"

	"go.uber.org/zap"
)

const (
	targetPrefix    = "AmazonSSM."
	jsonContentType = "application/x-amz-json-1.1"
	// maxRequestBytes is far above SSM's own request limits; it only stops
	// a runaway client from exhausting memory.
	maxRequestBytes = 4 << 20
)

// config is everything a server needs; main builds it from flags.
type config struct {
	region      string
	account     string
	outputLimit int
	documents   map[string]*document
	instances   map[string]*instance
	publisher   publisher // nil disables status-change events
	log         *zap.Logger
}

// server is the SSM endpoint plus the state of every command it ran.
type server struct {
	cfg    config
	log    *zap.Logger
	events *eventDispatcher
	ops    map[string]opFunc

	// ctx parents every invocation so Close can stop them all at once.
	ctx  context.Context
	stop context.CancelCauseFunc
	wg   sync.WaitGroup

	closeOnce sync.Once

	mu       sync.Mutex
	closed   bool
	commands []*command // oldest first
	byID     map[string]*command
}

var errShutdown = errors.New("ssmlocal is shutting down")

func newServer(cfg config) *server {
	ctx, stop := context.WithCancelCause(context.Background())
	s := &server{cfg: cfg, log: cfg.log, ctx: ctx, stop: stop, byID: make(map[string]*command)}
	s.ops = s.operations()
	if cfg.publisher != nil {
		s.events = newEventDispatcher(cfg.publisher, cfg.log, cfg.region, cfg.account)
	}
	return s
}

// Close refuses new commands, cancels running invocations, waits for them
// and flushes their final events. ctx bounds the event flush. Calls after
// the first do nothing.
func (s *server) Close(ctx context.Context) {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.stop(errShutdown)
		s.wg.Wait()
		if s.events != nil {
			s.events.close(ctx)
		}
	})
}

// Handler routes the SSM protocol on POST / and the lab control endpoints
// under /_lab/.
func (s *server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /{$}", s.serveSSM)
	mux.HandleFunc("GET /_lab/healthz", s.serveHealthz)
	mux.HandleFunc("GET /_lab/instances", s.serveInstances)
	mux.HandleFunc("POST /_lab/instances/{id}/terminate", s.serveTerminate)
	mux.HandleFunc("POST /_lab/instances/{id}/start", s.serveStart)
	mux.HandleFunc("PUT /_lab/events-target", s.serveEventsTarget)
	return mux
}

// opFunc decodes a request body and runs one operation.
type opFunc func(body []byte) (any, error)

// operation adapts a typed handler to an opFunc.
func operation[In, Out any](fn func(*In) (Out, error)) opFunc {
	return func(body []byte) (any, error) {
		var in In
		if len(body) > 0 {
			if err := json.Unmarshal(body, &in); err != nil {
				return nil, errorf(codeSerialization, "cannot decode request: %v", err)
			}
		}
		return fn(&in)
	}
}

func (s *server) operations() map[string]opFunc {
	return map[string]opFunc{
		"SendCommand":            operation(s.sendCommand),
		"GetCommandInvocation":   operation(s.getCommandInvocation),
		"ListCommandInvocations": operation(s.listCommandInvocations),
		"ListCommands":           operation(s.listCommands),
		"CancelCommand":          operation(s.cancelCommand),
	}
}

func (s *server) serveSSM(w http.ResponseWriter, r *http.Request) {
	requestID := newUUID()
	w.Header().Set("X-Amzn-Requestid", requestID)
	name, _ := strings.CutPrefix(r.Header.Get("X-Amz-Target"), targetPrefix)
	op, ok := s.ops[name]
	if !ok {
		s.writeError(w, errorf(codeUnknownOperation, "operation %q is not supported by ssmlocal", r.Header.Get("X-Amz-Target")))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBytes))
	if err != nil {
		s.writeError(w, errorf(codeSerialization, "cannot read request body: %v", err))
		return
	}
	out, err := op(body)
	if err != nil {
		s.log.Debug("operation failed", zap.String("operation", name), zap.String("request", requestID), zap.Error(err))
		s.writeError(w, err)
		return
	}
	s.writeJSON(w, http.StatusOK, out)
}

// writeError renders err in the awsJson1_1 error shape, which the SDK turns
// into the typed error named by "__type".
func (s *server) writeError(w http.ResponseWriter, err error) {
	var apiErr *apiError
	if !errors.As(err, &apiErr) {
		s.log.Error("internal error", zap.Error(err))
		apiErr = errorf(codeInternalServerError, "%v", err)
	}
	s.writeJSON(w, apiErr.httpStatus(), map[string]string{"__type": apiErr.code, "message": apiErr.message})
}

func (s *server) writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		s.log.Error("encode response", zap.Error(err))
		status = http.StatusInternalServerError
		body = []byte(`{"__type":"InternalServerError","message":"cannot encode response"}`)
	}
	w.Header().Set("Content-Type", jsonContentType)
	w.WriteHeader(status)
	if _, err := w.Write(body); err != nil {
		s.log.Debug("write response", zap.Error(err))
	}
}

func (s *server) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok\n")
}

// labInstance is the lab control view of one instance.
type labInstance struct {
	ID         string `json:"id"`
	Node       string `json:"node"`
	Terminated bool   `json:"terminated"`
}

func (s *server) serveInstances(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	list := make([]labInstance, 0, len(s.cfg.instances))
	for _, inst := range s.cfg.instances {
		list = append(list, labInstance{ID: inst.ID, Node: inst.Node, Terminated: inst.terminated})
	}
	s.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	writeLabJSON(w, http.StatusOK, map[string]any{"instances": list})
}

func (s *server) serveTerminate(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	stopped, ok := s.terminate(id)
	if !ok {
		writeLabJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("instance %q is not in the mapping", id)})
		return
	}
	writeLabJSON(w, http.StatusOK, map[string]any{"instance": id, "terminated": true, "stoppedInvocations": stopped})
}

func (s *server) serveStart(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !s.start(id) {
		writeLabJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("instance %q is not in the mapping", id)})
		return
	}
	writeLabJSON(w, http.StatusOK, map[string]any{"instance": id, "terminated": false})
}

// serveEventsTarget points status-change events at another queue: body
// {"queue_url": "..."}.
func (s *server) serveEventsTarget(w http.ResponseWriter, r *http.Request) {
	rt, ok := s.cfg.publisher.(interface{ Retarget(string) })
	if !ok {
		writeLabJSON(w, http.StatusConflict, map[string]string{"error": "status-change events are not published to SQS (-events-queue-url is unset)"})
		return
	}
	var body struct {
		QueueURL string `json:"queue_url"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&body); err != nil || !strings.HasPrefix(body.QueueURL, "http") {
		writeLabJSON(w, http.StatusBadRequest, map[string]string{"error": `want {"queue_url": "http..."}`})
		return
	}
	rt.Retarget(body.QueueURL)
	writeLabJSON(w, http.StatusOK, map[string]string{"queue_url": body.QueueURL})
}

func writeLabJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// newUUID returns a random (version 4) UUID, the form of SSM command ids.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails: crypto/rand aborts the program instead
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
