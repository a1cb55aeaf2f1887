package main

// ForkCommands are the commands that fork commits and run their children.
type ForkCommands struct {
	Fork   ForkCmd   `cmd:"" help:"Write N child commits of a captured commit; each child resumes with its own identity."`
	Fanout FanoutCmd `cmd:"" help:"Resume fork children side by side and run a command in each."`
}
