"""Frame-level inference: (image, vehicle state) -> scene description and action. No ROS below this line."""
