package main

import (
	"log/slog"
	"os"
	"time"

	"github.com/spore-vm/spore/objects"
)

// StoreCmd groups store maintenance commands.
type StoreCmd struct {
	Serve StoreServeCmd `cmd:"" help:"Serve the store to other spore processes over its unix socket (started on demand)."`
}

// StoreServeCmd runs the store server in the foreground.
type StoreServeCmd struct {
	IdleTimeout time.Duration `help:"Exit after this long without clients; 0 never exits." default:"30s" env:"SPORE_STORE_IDLE_TIMEOUT"`
}

func (c *StoreServeCmd) Run(g *Globals) error {
	// The server's stderr is STORE/server.log: record starts and stops there.
	if !g.Debug {
		slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	}
	dir, err := g.storeDir()
	if err != nil {
		return err
	}
	idle := c.IdleTimeout
	if idle == 0 {
		idle = -1
	}
	return objects.ServeDir(dir, objects.ServeOptions{IdleTimeout: idle})
}
