"""FedML 0.9.6 as this project runs it: its argument object, an offline init, and three small patches.

Imported only inside the FedML virtualenv (rank.py), never by the launcher.
"""

from __future__ import annotations

import argparse
import os
import queue
from pathlib import Path
from typing import Any, Mapping

def offline_fedml() -> None:
    """FedML's init asks its MLOps config server five times; there is no such server here, so skip it."""
    import fedml.core.mlops as mlops

    def fetch_config(args: Any, version: str = "release") -> None:
        for key, value in {
            "current_running_dir": os.path.expanduser("~/.fedml"), "os_name": "Linux", "version": version,
            "log_file_dir": "", "device_id": "0", "config_version": version, "cloud_region": "",
        }.items():
            setattr(args, key, value)

    mlops.fetch_config = fetch_config


def fedml_args(spec: Mapping[str, Any], rank: int) -> Any:
    """FedML's argument object for this rank: cross-silo horizontal, no MLOps, no wandb."""
    import yaml
    from fedml.arguments import Arguments

    slots = int(spec["processes"])
    comm = spec["comm"]
    # A client-only machine does not know how many rounds a resumed run has left; its clients stop on the
    # server's final payload instead (see patch_fedml), so config.rounds is only an upper bound.
    comm_round = int(spec["fedml_rounds"]) if rank == 0 or spec.get("fedml_rounds") else int(spec["config"]["rounds"])
    cfg = {
        "common_args": {"training_type": "cross_silo", "scenario": "horizontal", "random_seed": int(spec["config"]["seed"]),
                        "using_mlops": False},
        "data_args": {"dataset": "fednlp-bench"},
        "model_args": {"model": "fednlp-bench"},
        "train_args": {"federated_optimizer": "FedAvg", "client_id_list": None,
                       "client_num_in_total": slots, "client_num_per_round": slots,
                       "comm_round": comm_round, "epochs": 1, "batch_size": 1,
                       "client_optimizer": "sgd", "learning_rate": 0.0},
        "validation_args": {"frequency_of_the_test": 10**9},
        "device_args": {"worker_num": slots, "using_gpu": False},
        "comm_args": {"backend": comm, "is_mobile": 0},
        "tracking_args": {"enable_wandb": False, "enable_tracking": False},
    }
    if comm == "GRPC":
        cfg["comm_args"]["grpc_ipconfig_path"] = spec["grpc_ipconfig"]
    path = Path(spec["work_dir"]) / f"fedml_rank{rank}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    ns = argparse.Namespace(yaml_config_file=str(path), run_id=str(spec["run_id"]), rank=rank, local_rank=0,
                            node_rank=0, role="server" if rank == 0 else "client", run_device_id="0",
                            using_mlops=False)
    return Arguments(ns)


def fedml_dataset(slots: int) -> list[Any]:
    """FedML's 8-slot dataset list; the project's clients load their own data, so it only names the slots."""
    ones = {i: 1 for i in range(slots)}
    empty = {i: None for i in range(slots)}
    return [slots, 0, None, None, ones, dict(empty), dict(empty), 0]


def patch_fedml(bridge: Any = None) -> None:
    """Three small changes to FedML 0.9.6's cross-silo loop, each for a reason stated here.

    * Clients finish on the server's final payload (``RoundPayload.done``), not
      on a round count: a client-only machine cannot know how many rounds a
      resumed run has left, and FedML's client otherwise compares ``round_idx``
      with its own ``comm_round``.
    * The server records which client ranks reported ONLINE, so a connect
      timeout can name the missing ones.
    * The gRPC receive loop blocks on its queue (0.05 s) instead of spinning:
      FedML's loop polls ``qsize()`` with its ``sleep`` outside the ``while``,
      so every gRPC process burns a core while it waits, which on a small
      machine slows the training it waits for.
    """
    from fedml.cross_silo.client.fedml_client_master_manager import ClientMasterManager
    from fedml.cross_silo.client.message_define import MyMessage
    from fedml.cross_silo.server.fedml_server_manager import FedMLServerManager

    original_receive = ClientMasterManager.handle_message_receive_model_from_server

    def receive_model(self: Any, msg_params: Any) -> None:
        if getattr(msg_params.get(MyMessage.MSG_ARG_KEY_MODEL_PARAMS), "done", False):
            self.num_rounds = self.round_idx  # FedML's own "last round" branch: report FINISHED and stop
        original_receive(self, msg_params)

    ClientMasterManager.handle_message_receive_model_from_server = receive_model

    if bridge is not None:
        original_online = FedMLServerManager.process_online_status

        def online(self: Any, client_status: Any, msg_params: Any) -> None:
            bridge.online.add(int(msg_params.get_sender_id()))
            original_online(self, client_status, msg_params)

        FedMLServerManager.process_online_status = online

    from fedml.core.distributed.communication.grpc import grpc_comm_manager as gcm

    def handling_loop(self: Any) -> None:
        while self.is_running:
            try:
                msg_pkl = self.grpc_servicer.message_q.get(timeout=0.05)
            except queue.Empty:
                continue
            with gcm.lock:
                msg = gcm.pickle.loads(msg_pkl)
                sender_id = int(msg.get_sender_id())
                if sender_id not in self.grpc_mappings:
                    params = msg.get_params()
                    ip = str(params[gcm.GRPCCommManager.MSG_ARG_KEY_SENDER_IP])
                    self.grpc_mappings[sender_id] = gcm.GRPCMapping(
                        eid=sender_id, rank=int(params[gcm.GRPCCommManager.MSG_ARG_KEY_SENDER_RANK]),
                        grpc_server_ip=ip, grpc_server_port=int(params[gcm.GRPCCommManager.MSG_ARG_KEY_SENDER_PORT]),
                        ingress_ip=ip)
                for observer in self._observers:
                    observer.receive_message(msg.get_type(), msg)

    gcm.GRPCCommManager.message_handling_subroutine = handling_loop


def load_seams(spec: Mapping[str, Any]) -> Any:
    """The task object (None: the engine builds it) and the partition seam, as the launcher asked."""
    from fednlp_bench.backends.fedml.messages import load_object
    from fednlp_bench.engine.run import sources

    task = None
    if spec.get("task_factory"):
        task = load_object(spec["task_factory"])(**dict(spec.get("task_kwargs") or {}))
    if spec.get("partition_factory"):
        sources.build_partition = load_object(spec["partition_factory"])
    return task
