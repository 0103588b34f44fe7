// lease-contender campaigns for a Lease with client-go's leader election (LeaseLock,
// ReleaseOnCancel), for the interoperability tests of lock-kube. It prints one line per
// change, with the wall-clock time in Unix nanoseconds:
//
//	LEADING <nanos>   after client-go reports that it leads
//	STOPPED <nanos>   before it stops leading: on SIGTERM before cancelling (so before
//	                  the release), or when client-go reports the lease lost
//
// scripts/provision builds it inside Debian's Kubernetes v1.20.2 source tree, with the
// client-go vendored there.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file")
	namespace := flag.String("namespace", "default", "namespace of the Lease")
	name := flag.String("name", "", "name of the Lease")
	identity := flag.String("identity", "go-contender", "holder identity")
	leaseDuration := flag.Duration("lease-duration", 3*time.Second, "lease duration")
	renewDeadline := flag.Duration("renew-deadline", 2*time.Second, "renew deadline")
	retryPeriod := flag.Duration("retry-period", 500*time.Millisecond, "retry period")
	flag.Parse()

	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubeconfig:", err)
		os.Exit(2)
	}
	client := kubernetes.NewForConfigOrDie(config)

	var mu sync.Mutex
	leading := false
	report := func(state string, lead bool) {
		mu.Lock()
		defer mu.Unlock()
		if leading != lead {
			leading = lead
			fmt.Printf("%s %d\n", state, time.Now().UnixNano())
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-signals
		report("STOPPED", false) // the work stops here, before the release
		cancel()
	}()

	leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Name: *name, Namespace: *namespace},
			Client:     client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: *identity},
		},
		LeaseDuration:   *leaseDuration,
		RenewDeadline:   *renewDeadline,
		RetryPeriod:     *retryPeriod,
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) { report("LEADING", true) },
			OnStoppedLeading: func() { report("STOPPED", false) },
		},
	})
	fmt.Println("EXITED", time.Now().UnixNano())
}
