//go:build lab

package rescue

// SetAfterRead lets lab tests change a file at the moment the agent has
// read it and not yet checked it: the worst time for a writer to strike.
func SetAfterRead(a *Agent, f func(rel string)) { a.afterRead = f }

// SetBeforePart lets lab tests hold a part back, so that a multipart
// upload is surely in flight at a deadline.
func SetBeforePart(a *Agent, f func(rel string, part int32)) { a.beforePart = f }

// SetAfterOpen lets lab tests change a small file once it is opened and
// measured for its pack, before it is read.
func SetAfterOpen(a *Agent, f func(rel string)) { a.afterOpen = f }
