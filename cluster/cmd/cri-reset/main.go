// Command cri-reset stops and removes every pod sandbox (and so every
// container) of one CRI runtime, the way the kubelet would: containerd then
// runs CNI DEL, frees the pod IP and removes the network namespace and
// mounts. cluster/down.sh runs it after stopping the kubelet, so nothing the
// pods created is left behind.
//
//	cri-reset -endpoint unix:///var/lib/pronghorn-cluster/containerd/containerd.sock
package main

import (
	"context"
	"flag"
	"log"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	endpoint := flag.String("endpoint", "", "CRI endpoint, unix:///path/to/socket")
	timeout := flag.Duration("timeout", 60*time.Second, "overall time limit")
	flag.Parse()
	if *endpoint == "" {
		log.Fatal("cri-reset: -endpoint is required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	conn, err := grpc.NewClient(*endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatalf("cri-reset: %v", err)
	}
	defer conn.Close()
	rs := runtimeapi.NewRuntimeServiceClient(conn)

	resp, err := rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		log.Fatalf("cri-reset: list pod sandboxes: %v", err)
	}
	failed := false
	for _, sb := range resp.Items {
		name := sb.GetMetadata().GetNamespace() + "/" + sb.GetMetadata().GetName()
		if _, err := rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			log.Printf("cri-reset: stop %s: %v", name, err)
			failed = true
			continue
		}
		if _, err := rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			log.Printf("cri-reset: remove %s: %v", name, err)
			failed = true
			continue
		}
		log.Printf("cri-reset: removed pod sandbox %s", name)
	}
	if failed {
		log.Fatal("cri-reset: some pod sandboxes could not be removed")
	}
}
