"""Network modules: blocks, backbone, neck, heads, points, ASL sensitivity, losses, detector, grounder."""
