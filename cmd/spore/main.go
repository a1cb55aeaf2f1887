// Command spore captures running Linux microVMs as commits in a
// content-addressed store, forks children from them and resumes them with
// memory paged in lazily.
//
// The command is a thin layer over the packages of this module: it parses
// flags with kong, calls the library and prints the result as text or JSON.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/alecthomas/kong"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// run parses args, runs the selected command and returns the process exit
// code. It is separate from main so tests can drive the CLI in-process.
func run(args []string) int {
	var cli CLI
	parser, err := kong.New(&cli,
		kong.Name("spore"),
		kong.Description("Capture running microVMs as commits, fork them and resume them lazily."),
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Vars{"version": Version},
		kong.Exit(func(code int) { panic(exitPanic(code)) }),
	)
	if err != nil {
		fmt.Fprintf(os.Stderr, "spore: internal error: %v\n", err)
		return ExitFailure
	}

	code, ok := parseAndRun(parser, &cli, args)
	if ok {
		return code
	}
	return ExitSuccess
}

// exitPanic carries an exit code out of kong, which calls its Exit hook
// after printing help or a usage error and expects it not to return.
type exitPanic int

// parseAndRun returns the exit code and true when the command ran or failed,
// and false when kong printed help and asked to exit with status 0.
func parseAndRun(parser *kong.Kong, cli *CLI, args []string) (code int, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			p, isExit := r.(exitPanic)
			if !isExit {
				panic(r)
			}
			code, ok = int(p), true
		}
	}()

	ctx, err := parser.Parse(args)
	if err != nil {
		// Unknown commands, unknown flags and bad values are usage errors:
		// one line on stderr and exit status 2, like most Unix tools.
		fmt.Fprintf(os.Stderr, "spore: %v\n", err)
		var parseErr *kong.ParseError
		if errors.As(err, &parseErr) {
			fmt.Fprintln(os.Stderr, "Run 'spore --help' for usage.")
		}
		return ExitUsage, true
	}

	globals := &cli.Globals
	globals.configureLogging()
	if err := ctx.Run(globals); err != nil {
		return reportError(globals, err), true
	}
	return ExitSuccess, true
}
