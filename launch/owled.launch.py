"""Start owled_node with config/owled.yaml.

    ros2 launch owled_ros owled.launch.py model:=/path/to/pruned camera_topic:=/front/image_raw

Arguments: params_file, namespace, model, camera_topic and state_topic (remaps of the
node's default input topics /camera/image_raw and /odom).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    config = os.path.join(get_package_share_directory("owled_ros"), "config", "owled.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=config, description="owled_node parameters"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its outputs"),
        DeclareLaunchArgument("model", default_value="default", description="model directory or 'default'"),
        DeclareLaunchArgument("camera_topic", default_value="/camera/image_raw", description="camera input"),
        DeclareLaunchArgument("state_topic", default_value="/odom", description="vehicle state input"),
        Node(
            package="owled_ros",
            executable="owled_node",
            name="owled_node",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("params_file"), {"model": LaunchConfiguration("model")}],
            remappings=[
                ("/camera/image_raw", LaunchConfiguration("camera_topic")),
                ("/odom", LaunchConfiguration("state_topic")),
            ],
            output="screen",
        ),
    ])
