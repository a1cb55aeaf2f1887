package main

// ForkCommands are the commands that fork commits and run their children.
type ForkCommands struct{}
