package agent

// Exec starts a session. Exactly one of Argv and Shell is set: Shell runs
// as `/bin/sh -lc Shell`.
type Exec struct {
	Session uint32
	Argv    []string
	Shell   string
	Env     []string // KEY=VALUE entries; empty means the Server's default environment
	Dir     string   // working directory; empty means /
	Stdin   bool     // forward stdin; false closes stdin at once
	TTY     bool     // run on a new PTY; output then arrives on Stdout only
	Rows    uint16   // initial PTY size, 0 keeps the kernel default
	Cols    uint16
}

func (*Exec) Type() MsgType { return TypeExec }
func (m *Exec) encode(e *encoder) {
	e.u32(m.Session)
	e.strs(m.Argv)
	e.str(m.Shell)
	e.strs(m.Env)
	e.str(m.Dir)
	e.bool(m.Stdin)
	e.bool(m.TTY)
	e.u16(m.Rows)
	e.u16(m.Cols)
}
func (m *Exec) decode(d *decoder) {
	m.Session = d.sessionID()
	m.Argv = d.strs("argv")
	m.Shell = d.str("shell", MaxArgLen)
	m.Env = d.strs("env")
	m.Dir = d.str("dir", MaxPathLen)
	m.Stdin = d.bool("stdin")
	m.TTY = d.bool("tty")
	m.Rows = d.u16("rows")
	m.Cols = d.u16("cols")
	if d.err != nil {
		return
	}
	if err := m.Validate(); err != nil {
		d.fail("%v", err)
	}
}

// Started reports the PID of a new session's process.
type Started struct {
	Session uint32
	PID     uint32
}

func (*Started) Type() MsgType { return TypeStarted }
func (m *Started) encode(e *encoder) {
	e.u32(m.Session)
	e.u32(m.PID)
}
func (m *Started) decode(d *decoder) {
	m.Session = d.sessionID()
	m.PID = d.u32("pid")
}

// Data carries stream bytes that start at Offset in the stream.
type Data struct {
	Session uint32
	Stream  Stream
	Offset  uint64
	Data    []byte
}

func (*Data) Type() MsgType { return TypeData }
func (m *Data) encode(e *encoder) {
	e.u32(m.Session)
	e.u8(uint8(m.Stream))
	e.u64(m.Offset)
	e.bytes(m.Data)
}
func (m *Data) decode(d *decoder) {
	m.Session = d.sessionID()
	m.Stream = d.stream("stream", Stdin, Stdout, Stderr)
	m.Offset = d.u64("offset")
	m.Data = d.bytes("data", MaxDataLen)
	if d.err == nil && m.Offset+uint64(len(m.Data)) < m.Offset {
		d.fail("offset %d plus %d bytes overflows", m.Offset, len(m.Data))
	}
}

// Ack reports that the receiver has taken every byte of a stream before
// Offset, and the sender may drop them. With Rewind set it only requests
// the bytes from Offset again, because later ones were lost.
type Ack struct {
	Session uint32
	Stream  Stream
	Offset  uint64
	Rewind  bool
}

func (*Ack) Type() MsgType { return TypeAck }
func (m *Ack) encode(e *encoder) {
	e.u32(m.Session)
	e.u8(uint8(m.Stream))
	e.u64(m.Offset)
	e.bool(m.Rewind)
}
func (m *Ack) decode(d *decoder) {
	m.Session = d.sessionID()
	m.Stream = d.stream("stream", Stdin, Stdout, Stderr)
	m.Offset = d.u64("offset")
	m.Rewind = d.bool("rewind")
}

// CloseStdin ends a session's stdin once Offset bytes have been written.
type CloseStdin struct {
	Session uint32
	Offset  uint64
}

func (*CloseStdin) Type() MsgType { return TypeCloseStdin }
func (m *CloseStdin) encode(e *encoder) {
	e.u32(m.Session)
	e.u64(m.Offset)
}
func (m *CloseStdin) decode(d *decoder) {
	m.Session = d.sessionID()
	m.Offset = d.u64("offset")
}

// Resize sets the window size of a PTY session.
type Resize struct {
	Session    uint32
	Rows, Cols uint16
}

func (*Resize) Type() MsgType { return TypeResize }
func (m *Resize) encode(e *encoder) {
	e.u32(m.Session)
	e.u16(m.Rows)
	e.u16(m.Cols)
}
func (m *Resize) decode(d *decoder) {
	m.Session = d.sessionID()
	m.Rows = d.u16("rows")
	m.Cols = d.u16("cols")
}

// MaxSignal is the highest signal number a Signal message may carry
// (SIGRTMAX on Linux).
const MaxSignal = 64

// Signal sends a signal to the process group of a session's process.
type Signal struct {
	Session uint32
	Signal  uint8
}

func (*Signal) Type() MsgType { return TypeSignal }
func (m *Signal) encode(e *encoder) {
	e.u32(m.Session)
	e.u8(m.Signal)
}
func (m *Signal) decode(d *decoder) {
	m.Session = d.sessionID()
	m.Signal = d.u8("signal")
	if d.err == nil && (m.Signal == 0 || m.Signal > MaxSignal) {
		d.fail("signal %d is out of range 1..%d", m.Signal, MaxSignal)
	}
}

// Exit reports how a session ended and the final length of its output
// streams. A Client reports the exit once it has received both streams up
// to those lengths.
type Exit struct {
	Session   uint32
	Status    ExitStatus
	StdoutEnd uint64
	StderrEnd uint64
}

func (*Exit) Type() MsgType { return TypeExit }
func (m *Exit) encode(e *encoder) {
	e.u32(m.Session)
	m.Status.encode(e)
	e.u64(m.StdoutEnd)
	e.u64(m.StderrEnd)
}
func (m *Exit) decode(d *decoder) {
	m.Session = d.sessionID()
	m.Status.decode(d)
	m.StdoutEnd = d.u64("stdout end")
	m.StderrEnd = d.u64("stderr end")
}

// Attach requests a session's output from the given offsets, and its Exit
// if the process has ended. The Server replies with
// Status first. Offsets below a stream's Start are an error, because those
// bytes are gone.
type Attach struct {
	Session    uint32
	StdoutFrom uint64
	StderrFrom uint64
}

func (*Attach) Type() MsgType { return TypeAttach }
func (m *Attach) encode(e *encoder) {
	e.u32(m.Session)
	e.u64(m.StdoutFrom)
	e.u64(m.StderrFrom)
}
func (m *Attach) decode(d *decoder) {
	m.Session = d.sessionID()
	m.StdoutFrom = d.u64("stdout from")
	m.StderrFrom = d.u64("stderr from")
}

// Status reports one session's state, in reply to Attach.
type Status struct{ Info SessionInfo }

func (*Status) Type() MsgType       { return TypeStatus }
func (m *Status) encode(e *encoder) { m.Info.encode(e) }
func (m *Status) decode(d *decoder) { m.Info.decode(d) }

// Release makes the Server forget an exited session and its buffers.
type Release struct{ Session uint32 }

func (*Release) Type() MsgType       { return TypeRelease }
func (m *Release) encode(e *encoder) { e.u32(m.Session) }
func (m *Release) decode(d *decoder) { m.Session = d.sessionID() }

// ErrorCode classifies an Error message.
type ErrorCode uint16

// Error codes.
const (
	CodeProtocol       ErrorCode = 1 // a frame or message was invalid
	CodeVersion        ErrorCode = 2 // no common protocol version
	CodeUnknownSession ErrorCode = 3 // no session has this ID
	CodeSessionExists  ErrorCode = 4 // Exec reused a session ID
	CodeTooMany        ErrorCode = 5 // MaxSessions reached
	CodeExecFailed     ErrorCode = 6 // the process could not be started
	CodeBadRequest     ErrorCode = 7 // the request is valid but cannot apply
)

// Error reports a failed request. Session is 0 for a connection error.
type Error struct {
	Session uint32
	Code    ErrorCode
	Message string
}

func (*Error) Type() MsgType { return TypeError }
func (m *Error) encode(e *encoder) {
	e.u32(m.Session)
	e.u16(uint16(m.Code))
	e.str(m.Message)
}
func (m *Error) decode(d *decoder) {
	m.Session = d.u32("session")
	m.Code = ErrorCode(d.u16("code"))
	m.Message = d.str("message", MaxTextLen)
}

// Poweroff requests that the guest syncs its disks and powers off. The Server
// replies with Pong before it hands over to its power-off hook.
type Poweroff struct{ Nonce uint64 }

func (*Poweroff) Type() MsgType       { return TypePoweroff }
func (m *Poweroff) encode(e *encoder) { e.u64(m.Nonce) }
func (m *Poweroff) decode(d *decoder) { m.Nonce = d.u64("nonce") }

// SetIdentity gives a resumed guest its fork identity. The Server starts
// no new session until it has applied the identity and replied with
// IdentityDone.
type SetIdentity struct {
	Generation string   // new generation ID, written to /run/spore/generation.json
	TimeUnixNs int64    // wall clock to set; 0 leaves the clock alone
	Hostname   string   // empty leaves the hostname alone
	Entropy    []byte   // seed for the kernel RNG, at most MaxEntropyLen bytes
	Env        []string // KEY=VALUE entries written to /run/spore/env
}

// UnforkedIdentity returns the identity of a guest that was never
// forked: generation 0. Init writes its files at boot, and the host sends
// it, with the clock and entropy added, to a guest resumed from a commit
// that was not forked.
func UnforkedIdentity() *SetIdentity {
	return &SetIdentity{Generation: "0", Env: []string{"SPORE_GENERATION=0"}}
}

func (*SetIdentity) Type() MsgType { return TypeSetIdentity }
func (m *SetIdentity) encode(e *encoder) {
	e.str(m.Generation)
	e.i64(m.TimeUnixNs)
	e.str(m.Hostname)
	e.bytes(m.Entropy)
	e.strs(m.Env)
}
func (m *SetIdentity) decode(d *decoder) {
	m.Generation = d.str("generation", MaxTextLen)
	m.TimeUnixNs = d.i64("time")
	m.Hostname = d.str("hostname", MaxHostnameLen)
	m.Entropy = d.bytes("entropy", MaxEntropyLen)
	m.Env = d.strs("env")
	if d.err != nil {
		return
	}
	if err := m.Validate(); err != nil {
		d.fail("%v", err)
	}
}

// IdentityDone is the reply to SetIdentity. Error is empty on success.
type IdentityDone struct {
	Generation string
	Error      string
}

func (*IdentityDone) Type() MsgType { return TypeIdentityDone }
func (m *IdentityDone) encode(e *encoder) {
	e.str(m.Generation)
	e.str(m.Error)
}
func (m *IdentityDone) decode(d *decoder) {
	m.Generation = d.str("generation", MaxTextLen)
	m.Error = d.str("error", MaxTextLen)
}

// Freeze requests that the guest sync and freeze its root file system (FIFREEZE),
// so that the disk holds a clean file system while the host captures it,
// or to thaw it (FITHAW) when Thaw is set. The Server replies with
// FreezeDone.
type Freeze struct {
	Nonce uint64
	Thaw  bool
}

func (*Freeze) Type() MsgType { return TypeFreeze }
func (m *Freeze) encode(e *encoder) {
	e.u64(m.Nonce)
	e.bool(m.Thaw)
}
func (m *Freeze) decode(d *decoder) {
	m.Nonce = d.u64("nonce")
	m.Thaw = d.bool("thaw")
}

// FreezeDone is the reply to Freeze. Error is empty on success.
type FreezeDone struct {
	Nonce uint64
	Error string
}

func (*FreezeDone) Type() MsgType { return TypeFreezeDone }
func (m *FreezeDone) encode(e *encoder) {
	e.u64(m.Nonce)
	e.str(m.Error)
}
func (m *FreezeDone) decode(d *decoder) {
	m.Nonce = d.u64("nonce")
	m.Error = d.str("error", MaxTextLen)
}
