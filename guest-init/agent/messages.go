package agent

import (
	"fmt"
)

// Protocol versions. A Client offers a range in Hello and the Server picks
// the highest version that both support.
const (
	ProtocolVersion    = 1
	MinProtocolVersion = 1
)

// helloMagic opens every Hello body, so a stray valid frame of another
// protocol is not taken for a handshake.
const helloMagic = "spore-agent"

// MsgType is the message type byte of a frame header.
type MsgType uint8

// Message types. Directions: H->G is host to guest, G->H is guest to host.
const (
	TypeHello        MsgType = 1  // H->G: start or restart a connection
	TypeHelloReply   MsgType = 2  // G->H: version, agent state, sessions
	TypePing         MsgType = 3  // H->G: request agent state
	TypePong         MsgType = 4  // G->H: agent state
	TypeExec         MsgType = 5  // H->G: start a session
	TypeStarted      MsgType = 6  // G->H: session started with a PID
	TypeData         MsgType = 7  // both: stream bytes at an offset
	TypeAck          MsgType = 8  // both: stream bytes received up to an offset
	TypeCloseStdin   MsgType = 9  // H->G: stdin ends at an offset
	TypeResize       MsgType = 10 // H->G: PTY window size
	TypeSignal       MsgType = 11 // H->G: send a signal to the session process
	TypeExit         MsgType = 12 // G->H: session exit status and final offsets
	TypeAttach       MsgType = 13 // H->G: resume output streams at offsets
	TypeStatus       MsgType = 14 // G->H: one session's state
	TypeRelease      MsgType = 15 // H->G: forget an exited session
	TypeError        MsgType = 16 // G->H: a request failed
	TypePoweroff     MsgType = 17 // H->G: sync and power off
	TypeSetIdentity  MsgType = 18 // H->G: apply a fork identity
	TypeIdentityDone MsgType = 19 // G->H: identity applied, or why not
	TypeFreeze       MsgType = 20 // H->G: sync and freeze, or thaw, the root file system
	TypeFreezeDone   MsgType = 21 // G->H: freeze or thaw done, or why not
)

var typeNames = map[MsgType]string{
	TypeHello: "Hello", TypeHelloReply: "HelloReply", TypePing: "Ping", TypePong: "Pong",
	TypeExec: "Exec", TypeStarted: "Started", TypeData: "Data", TypeAck: "Ack",
	TypeCloseStdin: "CloseStdin", TypeResize: "Resize", TypeSignal: "Signal",
	TypeExit: "Exit", TypeAttach: "Attach", TypeStatus: "Status", TypeRelease: "Release",
	TypeError: "Error", TypePoweroff: "Poweroff", TypeSetIdentity: "SetIdentity",
	TypeIdentityDone: "IdentityDone", TypeFreeze: "Freeze", TypeFreezeDone: "FreezeDone",
}

func (t MsgType) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("MsgType(%d)", uint8(t))
}

// Stream identifies one byte stream of a session.
type Stream uint8

// Streams of a session. A PTY session sends all output on Stdout.
const (
	Stdin  Stream = 0
	Stdout Stream = 1
	Stderr Stream = 2
)

func (s Stream) String() string {
	switch s {
	case Stdin:
		return "stdin"
	case Stdout:
		return "stdout"
	case Stderr:
		return "stderr"
	}
	return fmt.Sprintf("Stream(%d)", uint8(s))
}

// Message is one protocol message. The concrete types are the pointer
// types below (*Hello, *Exec, ...).
type Message interface {
	Type() MsgType // the message type written in the frame header
	encode(e *encoder)
	decode(d *decoder)
}

// Decode decodes a frame into its message and validates every field.
// Errors wrap ErrMalformed.
func Decode(f Frame) (Message, error) {
	var m Message
	switch f.Type {
	case TypeHello:
		m = new(Hello)
	case TypeHelloReply:
		m = new(HelloReply)
	case TypePing:
		m = new(Ping)
	case TypePong:
		m = new(Pong)
	case TypeExec:
		m = new(Exec)
	case TypeStarted:
		m = new(Started)
	case TypeData:
		m = new(Data)
	case TypeAck:
		m = new(Ack)
	case TypeCloseStdin:
		m = new(CloseStdin)
	case TypeResize:
		m = new(Resize)
	case TypeSignal:
		m = new(Signal)
	case TypeExit:
		m = new(Exit)
	case TypeAttach:
		m = new(Attach)
	case TypeStatus:
		m = new(Status)
	case TypeRelease:
		m = new(Release)
	case TypeError:
		m = new(Error)
	case TypePoweroff:
		m = new(Poweroff)
	case TypeSetIdentity:
		m = new(SetIdentity)
	case TypeIdentityDone:
		m = new(IdentityDone)
	case TypeFreeze:
		m = new(Freeze)
	case TypeFreezeDone:
		m = new(FreezeDone)
	default:
		return nil, fmt.Errorf("%w: unknown message type %d", ErrMalformed, uint8(f.Type))
	}
	d := decoder{b: f.Body, msg: f.Type}
	m.decode(&d)
	if err := d.finish(); err != nil {
		return nil, err
	}
	return m, nil
}

// sessionID decodes a session ID, which must not be 0.
func (d *decoder) sessionID() uint32 {
	id := d.u32("session")
	if d.err == nil && id == 0 {
		d.fail("session ID 0 is reserved")
	}
	return id
}

func (d *decoder) stream(field string, allowed ...Stream) Stream {
	s := Stream(d.u8(field))
	if d.err != nil {
		return 0
	}
	for _, a := range allowed {
		if s == a {
			return s
		}
	}
	d.fail("%s is %d, expected one of %v", field, uint8(s), allowed)
	return 0
}

// Hello starts a connection. The Server replies with HelloReply.
type Hello struct {
	MinVersion, MaxVersion uint16
	Nonce                  uint64 // echoed in HelloReply to match the reply
}

func (*Hello) Type() MsgType { return TypeHello }
func (m *Hello) encode(e *encoder) {
	e.str(helloMagic)
	e.u16(m.MinVersion)
	e.u16(m.MaxVersion)
	e.u64(m.Nonce)
}
func (m *Hello) decode(d *decoder) {
	if magic := d.str("magic", len(helloMagic)); d.err == nil && magic != helloMagic {
		d.fail("magic is %q, expected %q", magic, helloMagic)
	}
	m.MinVersion = d.u16("min version")
	m.MaxVersion = d.u16("max version")
	m.Nonce = d.u64("nonce")
	if d.err == nil && m.MinVersion > m.MaxVersion {
		d.fail("min version %d is above max version %d", m.MinVersion, m.MaxVersion)
	}
}

// AgentInfo summarizes the guest agent's state.
type AgentInfo struct {
	AgentVersion string // build version of the guest init
	BootID       string // /proc/sys/kernel/random/boot_id, or empty
	Generation   string // fork generation ID from the last SetIdentity, or empty
	Hostname     string
	Uptime       uint64 // nanoseconds since the Server started
	Running      uint32 // sessions whose process has not exited
	Sessions     uint32 // sessions kept, running or exited
	Ready        bool   // false while a SetIdentity is being applied
}

func (a *AgentInfo) encode(e *encoder) {
	e.str(a.AgentVersion)
	e.str(a.BootID)
	e.str(a.Generation)
	e.str(a.Hostname)
	e.u64(a.Uptime)
	e.u32(a.Running)
	e.u32(a.Sessions)
	e.bool(a.Ready)
}

func (a *AgentInfo) decode(d *decoder) {
	a.AgentVersion = d.str("agent version", MaxTextLen)
	a.BootID = d.str("boot ID", MaxTextLen)
	a.Generation = d.str("generation", MaxTextLen)
	a.Hostname = d.str("hostname", MaxHostnameLen)
	a.Uptime = d.u64("uptime")
	a.Running = d.u32("running")
	a.Sessions = d.u32("sessions")
	a.Ready = d.bool("ready")
}

// StreamPos describes an output stream kept by the Server: bytes before
// Start were acknowledged and dropped, bytes in [Start, End) are kept for
// sending, and End is the total the process has written so far.
type StreamPos struct {
	Start, End uint64
}

// SessionInfo is one session's state as the Server reports it.
type SessionInfo struct {
	ID          uint32
	PID         uint32
	TTY         bool
	Exited      bool
	Status      ExitStatus // valid when Exited
	StdinOffset uint64     // stdin bytes written to the process
	StdinClosed bool
	Stdout      StreamPos
	Stderr      StreamPos
}

func (s *SessionInfo) encode(e *encoder) {
	e.u32(s.ID)
	e.u32(s.PID)
	e.bool(s.TTY)
	e.bool(s.Exited)
	s.Status.encode(e)
	e.u64(s.StdinOffset)
	e.bool(s.StdinClosed)
	e.u64(s.Stdout.Start)
	e.u64(s.Stdout.End)
	e.u64(s.Stderr.Start)
	e.u64(s.Stderr.End)
}

func (s *SessionInfo) decode(d *decoder) {
	s.ID = d.sessionID()
	s.PID = d.u32("pid")
	s.TTY = d.bool("tty")
	s.Exited = d.bool("exited")
	s.Status.decode(d)
	s.StdinOffset = d.u64("stdin offset")
	s.StdinClosed = d.bool("stdin closed")
	s.Stdout = d.streamPos("stdout")
	s.Stderr = d.streamPos("stderr")
}

func (d *decoder) streamPos(field string) StreamPos {
	p := StreamPos{Start: d.u64(field + " start"), End: d.u64(field + " end")}
	if d.err == nil && p.Start > p.End {
		d.fail("%s start %d is beyond its end %d", field, p.Start, p.End)
	}
	return p
}

// ExitStatus is the end state of a session's process: an exit code or a
// signal.
type ExitStatus struct {
	Code   int // exit code, or 128+Signal when a signal killed the process
	Signal int // the signal that killed the process, or 0
}

func (s *ExitStatus) encode(e *encoder) {
	e.u8(uint8(s.Code))
	e.u8(uint8(s.Signal))
}

func (s *ExitStatus) decode(d *decoder) {
	s.Code = int(d.u8("exit code"))
	s.Signal = int(d.u8("exit signal"))
	if d.err == nil && s.Signal != 0 && s.Code != 128+s.Signal {
		d.fail("exit code %d does not match signal %d (expected %d)", s.Code, s.Signal, 128+s.Signal)
	}
}

func (s ExitStatus) String() string {
	if s.Signal != 0 {
		return fmt.Sprintf("killed by signal %d (exit code %d)", s.Signal, s.Code)
	}
	return fmt.Sprintf("exit code %d", s.Code)
}

// HelloReply is the reply to Hello. It lists every session the Server
// keeps, so a new Client learns the offsets of each stream and can Attach.
type HelloReply struct {
	Version  uint16
	Nonce    uint64
	Info     AgentInfo
	Sessions []SessionInfo
}

func (*HelloReply) Type() MsgType { return TypeHelloReply }
func (m *HelloReply) encode(e *encoder) {
	e.u16(m.Version)
	e.u64(m.Nonce)
	m.Info.encode(e)
	e.u32(uint32(len(m.Sessions)))
	for i := range m.Sessions {
		m.Sessions[i].encode(e)
	}
}
func (m *HelloReply) decode(d *decoder) {
	m.Version = d.u16("version")
	m.Nonce = d.u64("nonce")
	m.Info.decode(d)
	n := d.u32("session count")
	if d.err == nil && n > MaxSessions {
		d.fail("session count %d exceeds the limit of %d", n, MaxSessions)
		return
	}
	for i := 0; i < int(n) && d.err == nil; i++ {
		var s SessionInfo
		s.decode(d)
		m.Sessions = append(m.Sessions, s)
	}
}

// Ping requests the agent state; the Server replies with Pong.
type Ping struct{ Nonce uint64 }

func (*Ping) Type() MsgType       { return TypePing }
func (m *Ping) encode(e *encoder) { e.u64(m.Nonce) }
func (m *Ping) decode(d *decoder) { m.Nonce = d.u64("nonce") }

// Pong is the reply to Ping.
type Pong struct {
	Nonce uint64
	Info  AgentInfo
}

func (*Pong) Type() MsgType { return TypePong }
func (m *Pong) encode(e *encoder) {
	e.u64(m.Nonce)
	m.Info.encode(e)
}
func (m *Pong) decode(d *decoder) {
	m.Nonce = d.u64("nonce")
	m.Info.decode(d)
}
