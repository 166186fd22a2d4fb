"""Creates what nightshift's ecs tests run on, in a running moto_server, and prints it as JSON.

Usage: python setup.py ENDPOINT_URL

A cluster `nightly`; a VPC with EnableDnsHostnames, a subnet and a security group (moto's
RunTask for awsvpc needs them to exist); the Fargate task definition `nightly-extract`
(container `extract`, awslogs group `/ecs/nightly`, stream prefix `ecs`; moto needs
`memory` on the container); the log group.
"""

import json
import sys

import boto3


def main(endpoint):
    session = boto3.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )
    ec2 = session.client("ec2", endpoint_url=endpoint)
    ecs = session.client("ecs", endpoint_url=endpoint)
    logs = session.client("logs", endpoint_url=endpoint)

    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(
        GroupName="nightly", Description="nightshift tests", VpcId=vpc
    )["GroupId"]

    ecs.create_cluster(clusterName="nightly")
    logs.create_log_group(logGroupName="/ecs/nightly")
    definition = ecs.register_task_definition(
        family="nightly-extract",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[
            {
                "name": "extract",
                "image": "example.invalid/extract:1",
                "memory": 512,
                "essential": True,
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": "/ecs/nightly",
                        "awslogs-region": "us-east-1",
                        "awslogs-stream-prefix": "ecs",
                    },
                },
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    print(json.dumps({"subnet": subnet, "security_group": group, "task_definition": definition}))


if __name__ == "__main__":
    main(sys.argv[1])
