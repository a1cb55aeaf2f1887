// Command payload is a test program for the testbed: it prints its
// arguments, an environment variable and the files it was given, then exits
// with the status named by its first argument, or sleeps forever with
// "hang".
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "hang" {
		fmt.Println("hanging")
		for {
			time.Sleep(time.Hour)
		}
	}
	fmt.Printf("args=%q\n", os.Args[1:])
	fmt.Printf("TESTBED_VALUE=%s\n", os.Getenv("TESTBED_VALUE"))
	for _, path := range []string{"/extra/file.txt", "/tmp/placed/file.txt"} {
		if data, err := os.ReadFile(path); err == nil {
			fmt.Printf("%s=%s\n", path, data)
		}
	}
	fmt.Fprintln(os.Stderr, "to stderr")
	fmt.Print("partial line")
	code, _ := strconv.Atoi(os.Args[1])
	os.Exit(code)
}
