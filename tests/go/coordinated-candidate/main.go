// coordinated-candidate takes part in Kubernetes' coordinated leader election (KEP-4355)
// with client-go v0.36: it announces a LeaseCandidate (leaderelection.NewCandidate) and
// runs client-go's leader election with Coordinated: true and ReleaseOnCancel, so that
// it leads only when the election controller of kube-apiserver names it the Lease's
// holder. For the interoperability tests of lock-kube. It prints one line per change,
// with the wall-clock time in Unix nanoseconds, as tests/go/lease-contender does:
//
//	LEADING <nanos>   after client-go reports that it leads
//	STOPPED <nanos>   before it stops leading: on SIGTERM before withdrawing and
//	                  cancelling (so before the release), or when client-go reports the
//	                  lease lost
//	EXITED <nanos>    after the release, before the process exits
//
// On SIGTERM it stops announcing and deletes its LeaseCandidate (so that the controller
// elects it no more), then cancels the election, which releases the Lease.
//
// Built by scripts/provision for Kubernetes 1.36 only (client-go v0.36.3): v1.20 has no
// coordinated leader election.
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

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file")
	namespace := flag.String("namespace", "default", "namespace of the Lease and the LeaseCandidate")
	name := flag.String("name", "", "name of the Lease")
	identity := flag.String("identity", "go-candidate", "holder identity, also the LeaseCandidate's name")
	binaryVersion := flag.String("binary-version", "1.36.0", "the LeaseCandidate's binaryVersion")
	emulationVersion := flag.String("emulation-version", "1.36.0", "the LeaseCandidate's emulationVersion")
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

	candidate, _, err := leaderelection.NewCandidate(client, *namespace, *identity, *name,
		*binaryVersion, *emulationVersion, coordinationv1.OldestEmulationVersion)
	if err != nil {
		fmt.Fprintln(os.Stderr, "candidate:", err)
		os.Exit(2)
	}
	announcing, stopAnnouncing := context.WithCancel(context.Background())
	announced := make(chan struct{})
	go func() {
		defer close(announced)
		candidate.Run(announcing)
	}()

	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-signals
		report("STOPPED", false) // the work stops here, before the release
		stopAnnouncing()
		<-announced
		withdraw, done := context.WithTimeout(context.Background(), 5*time.Second)
		defer done()
		err := client.CoordinationV1beta1().LeaseCandidates(*namespace).Delete(withdraw, *identity, metav1.DeleteOptions{})
		if err != nil && !errors.IsNotFound(err) {
			fmt.Fprintln(os.Stderr, "withdraw the LeaseCandidate:", err)
		}
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
		Coordinated:     true,
		Name:            *name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) { report("LEADING", true) },
			OnStoppedLeading: func() { report("STOPPED", false) },
		},
	})
	fmt.Println("EXITED", time.Now().UnixNano())
}
