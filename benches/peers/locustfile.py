# Locust's MQTT user as benches/peers.sh runs it: each user is a paho client (Locust's
# locust.contrib.mqtt.MqttUser) that publishes 64 bytes ten times a second, or, with
# PEERS_IDLE=1, connects and stays idle. The broker's port and the QoS come from the
# environment (PEERS_PORT, PEERS_QOS).
import os

from locust import constant, constant_pacing, task
from locust.contrib.mqtt import MqttUser

PORT = int(os.environ.get("PEERS_PORT", "1883"))
QOS = int(os.environ.get("PEERS_QOS", "0"))
IDLE = os.environ.get("PEERS_IDLE") == "1"
PAYLOAD = b"x" * 64


class Meter(MqttUser):
    host = "127.0.0.1"
    port = PORT
    wait_time = constant(3600) if IDLE else constant_pacing(0.1)

    @task
    def report(self):
        if not IDLE:
            self.client.publish(f"peers/{self.client.client_id}", PAYLOAD, qos=QOS)
