"""Official-equivalent Ego4D metrics: MQ mAP and Recall@kx, NLQ R@k."""
