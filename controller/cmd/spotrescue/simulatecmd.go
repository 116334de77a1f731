package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/spotrescue/spotrescue/controller"
	"github.com/spotrescue/spotrescue/controller/config"
	"github.com/spotrescue/spotrescue/rescue"
	"github.com/spotrescue/spotrescue/rescue/naming"
)

// drillKinds maps --kind to the EventBridge detail-type and detail.
var drillKinds = map[string]struct {
	detailType string
	detail     map[string]string
}{
	"warning":    {"EC2 Spot Instance Interruption Warning", map[string]string{"instance-action": "terminate"}},
	"rebalance":  {"EC2 Instance Rebalance Recommendation", map[string]string{}},
	"terminated": {"EC2 Instance State-change Notification", map[string]string{"state": "terminated"}},
}

func newSimulateCommand(g *globals) *cobra.Command {
	var node, instance, kind string
	var in time.Duration
	cmd := &cobra.Command{
		Use:   "simulate (--node <slurm node> | --instance <id>) [--kind warning|rebalance|terminated] [--in 120s]",
		Short: "Rehearse an interruption: put a realistic EventBridge event on the queue",
		Long: `Puts an event on the interruption queue with the same shape EventBridge
delivers, marked as a drill (the record says so), so the whole path runs: hold,
drain, upload, requeue, restore. Like an AWS FIS spot interruption experiment,
but nothing happens to the EC2 instance. --in is the time left before the
simulated reclaim (EC2 gives 120s).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, ok := drillKinds[kind]
			if !ok {
				return fmt.Errorf("--kind %q: use warning, rebalance or terminated", kind)
			}
			if (node == "") == (instance == "") {
				return fmt.Errorf("give exactly one of --node or --instance")
			}
			if in <= 0 || in > controller.Reclaim {
				return fmt.Errorf("--in %s: give a time left between 1s and %s", in, controller.Reclaim)
			}
			cfg, err := g.load(cmd, config.RoleDrill)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			awsCfg, err := rescue.AWSConfig(ctx, cfg.Region)
			if err != nil {
				return err
			}
			if node != "" {
				if instance, err = (&controller.NodeTable{DB: dynamodb.NewFromConfig(awsCfg), Table: cfg.NodeTable}).InstanceOf(ctx, node); err != nil {
					return err
				}
			}
			if !naming.ValidInstance(instance) {
				return fmt.Errorf("--instance %q is not an EC2 instance id", instance)
			}
			at := time.Now().UTC().Add(in - controller.Reclaim)
			body, id := drillEvent(cfg.Region, instance, at, k.detailType, k.detail)
			if _, err := sqs.NewFromConfig(awsCfg).SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(cfg.QueueURL), MessageBody: aws.String(body)}); err != nil {
				return fmt.Errorf("send drill event: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "drill: %s for instance %s sent as event %s", k.detailType, instance, id)
			if kind == "warning" {
				fmt.Fprintf(cmd.OutOrStdout(), "; simulated reclaim at %s", at.Add(controller.Reclaim).Format(time.RFC3339))
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return nil
		},
	}
	withConfig(cmd, drillSettings...)
	cmd.Flags().StringVar(&node, "node", "", "Slurm node whose instance is interrupted")
	cmd.Flags().StringVar(&instance, "instance", "", "EC2 instance id to interrupt")
	cmd.Flags().StringVar(&kind, "kind", "warning", "warning, rebalance or terminated")
	cmd.Flags().DurationVar(&in, "in", controller.Reclaim, "time left before the simulated reclaim")
	return cmd
}

// drillEvent builds the envelope EventBridge would deliver, plus the drill mark.
func drillEvent(region, instance string, at time.Time, detailType string, extra map[string]string) (string, string) {
	detail := map[string]string{"instance-id": instance}
	for k, v := range extra {
		detail[k] = v
	}
	source := "aws.ec2"
	id := uuid.NewString()
	body, _ := json.Marshal(map[string]any{
		"version": "0", "id": id, "detail-type": detailType, "source": source, "account": "",
		"time": at.Format(time.RFC3339), "region": region,
		"resources":        []string{fmt.Sprintf("arn:aws:ec2:%s::instance/%s", region, instance)},
		"detail":           detail,
		"spotrescue-drill": true,
	})
	return string(body), id
}
