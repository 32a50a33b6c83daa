"""The ROS 2 layer: owled_node (a lifecycle node), its parameters, message conversions, bag play and record tools."""
