// The published ABI of the system addresses (docs/abi/magicoin.json): eth_call views (viem's readContract)
// and the work events their receipt logs carry (viem's parseEventLogs, getLogs). Generated from that file;
// test/unit.test.js checks every entry against it, so the two cannot drift apart.

export const MagicoinPool = /** @type {const} */ ({
  "address": "0x0000000000000000000000000000000000001000",
  "abi": [
    {
      "type": "function",
      "name": "balanceOf",
      "stateMutability": "view",
      "inputs": [
        {
          "name": "account",
          "type": "address"
        }
      ],
      "outputs": [
        {
          "name": "",
          "type": "uint256"
        }
      ]
    },
    {
      "type": "function",
      "name": "recognitionOf",
      "stateMutability": "view",
      "inputs": [
        {
          "name": "account",
          "type": "address"
        }
      ],
      "outputs": [
        {
          "name": "",
          "type": "uint256"
        }
      ]
    },
    {
      "type": "function",
      "name": "poolBalance",
      "stateMutability": "view",
      "inputs": [],
      "outputs": [
        {
          "name": "",
          "type": "uint256"
        }
      ]
    },
    {
      "type": "function",
      "name": "issued",
      "stateMutability": "view",
      "inputs": [],
      "outputs": [
        {
          "name": "",
          "type": "uint256"
        }
      ]
    },
    {
      "type": "event",
      "name": "Offering",
      "anonymous": false,
      "inputs": [
        {
          "name": "account",
          "type": "address",
          "indexed": true
        },
        {
          "name": "jobId",
          "type": "bytes32",
          "indexed": true
        },
        {
          "name": "amount",
          "type": "uint256",
          "indexed": false
        }
      ]
    },
    {
      "type": "event",
      "name": "Slashed",
      "anonymous": false,
      "inputs": [
        {
          "name": "offender",
          "type": "address",
          "indexed": true
        },
        {
          "name": "reporter",
          "type": "address",
          "indexed": true
        },
        {
          "name": "amount",
          "type": "uint256",
          "indexed": false
        }
      ]
    },
    {
      "type": "event",
      "name": "Rewarded",
      "anonymous": false,
      "inputs": [
        {
          "name": "account",
          "type": "address",
          "indexed": true
        },
        {
          "name": "amount",
          "type": "uint256",
          "indexed": false
        }
      ]
    }
  ]
});

export const MagicoinJobs = /** @type {const} */ ({
  "address": "0x0000000000000000000000000000000000001002",
  "abi": [
    {
      "type": "function",
      "name": "getJob",
      "stateMutability": "view",
      "inputs": [
        {
          "name": "jobId",
          "type": "bytes32"
        }
      ],
      "outputs": [
        {
          "name": "exists",
          "type": "bool"
        },
        {
          "name": "status",
          "type": "uint8"
        },
        {
          "name": "requester",
          "type": "address"
        },
        {
          "name": "worker",
          "type": "address"
        },
        {
          "name": "model",
          "type": "bytes32"
        },
        {
          "name": "maxTokens",
          "type": "uint256"
        },
        {
          "name": "outputTokens",
          "type": "uint256"
        },
        {
          "name": "scorePpm",
          "type": "uint256"
        },
        {
          "name": "createdBlock",
          "type": "uint256"
        }
      ]
    },
    {
      "type": "event",
      "name": "JobRequested",
      "anonymous": false,
      "inputs": [
        {
          "name": "jobId",
          "type": "bytes32",
          "indexed": true
        },
        {
          "name": "requester",
          "type": "address",
          "indexed": true
        },
        {
          "name": "model",
          "type": "bytes32",
          "indexed": true
        },
        {
          "name": "maxTokens",
          "type": "uint256",
          "indexed": false
        }
      ]
    },
    {
      "type": "event",
      "name": "JobAssigned",
      "anonymous": false,
      "inputs": [
        {
          "name": "jobId",
          "type": "bytes32",
          "indexed": true
        },
        {
          "name": "worker",
          "type": "address",
          "indexed": true
        },
        {
          "name": "attempt",
          "type": "uint256",
          "indexed": false
        },
        {
          "name": "deadlineBlock",
          "type": "uint256",
          "indexed": false
        }
      ]
    },
    {
      "type": "event",
      "name": "JobResult",
      "anonymous": false,
      "inputs": [
        {
          "name": "jobId",
          "type": "bytes32",
          "indexed": true
        },
        {
          "name": "worker",
          "type": "address",
          "indexed": true
        },
        {
          "name": "outputTokens",
          "type": "uint256",
          "indexed": false
        },
        {
          "name": "outputHash",
          "type": "bytes32",
          "indexed": false
        }
      ]
    },
    {
      "type": "event",
      "name": "JobAttested",
      "anonymous": false,
      "inputs": [
        {
          "name": "jobId",
          "type": "bytes32",
          "indexed": true
        },
        {
          "name": "attester",
          "type": "address",
          "indexed": true
        },
        {
          "name": "scorePpm",
          "type": "uint256",
          "indexed": false
        }
      ]
    },
    {
      "type": "event",
      "name": "JobClosed",
      "anonymous": false,
      "inputs": [
        {
          "name": "jobId",
          "type": "bytes32",
          "indexed": true
        },
        {
          "name": "status",
          "type": "uint8",
          "indexed": true
        },
        {
          "name": "scorePpm",
          "type": "uint256",
          "indexed": false
        }
      ]
    }
  ]
});

export const MagicoinWorkers = /** @type {const} */ ({
  "address": "0x0000000000000000000000000000000000001001",
  "abi": [
    {
      "type": "event",
      "name": "WorkerRegistered",
      "anonymous": false,
      "inputs": [
        {
          "name": "worker",
          "type": "address",
          "indexed": true
        },
        {
          "name": "model",
          "type": "bytes32",
          "indexed": true
        },
        {
          "name": "capacity",
          "type": "uint256",
          "indexed": false
        }
      ]
    }
  ]
});

export const MagicoinAnnotations = /** @type {const} */ ({
  "address": "0x0000000000000000000000000000000000001005",
  "abi": [
    {
      "type": "event",
      "name": "AnnotationTaskPosted",
      "anonymous": false,
      "inputs": [
        {
          "name": "taskId",
          "type": "bytes32",
          "indexed": true
        },
        {
          "name": "requester",
          "type": "address",
          "indexed": true
        },
        {
          "name": "labels",
          "type": "uint256",
          "indexed": false
        },
        {
          "name": "annotators",
          "type": "uint256",
          "indexed": false
        },
        {
          "name": "deadlineBlock",
          "type": "uint256",
          "indexed": false
        }
      ]
    },
    {
      "type": "event",
      "name": "Annotated",
      "anonymous": false,
      "inputs": [
        {
          "name": "taskId",
          "type": "bytes32",
          "indexed": true
        },
        {
          "name": "annotator",
          "type": "address",
          "indexed": true
        },
        {
          "name": "labelIndex",
          "type": "uint256",
          "indexed": false
        },
        {
          "name": "weightPpm",
          "type": "uint256",
          "indexed": false
        }
      ]
    },
    {
      "type": "event",
      "name": "LabelRecognised",
      "anonymous": false,
      "inputs": [
        {
          "name": "taskId",
          "type": "bytes32",
          "indexed": true
        },
        {
          "name": "labelIndex",
          "type": "uint256",
          "indexed": false
        }
      ]
    },
    {
      "type": "event",
      "name": "AnnotationTaskClosed",
      "anonymous": false,
      "inputs": [
        {
          "name": "taskId",
          "type": "bytes32",
          "indexed": true
        },
        {
          "name": "status",
          "type": "uint8",
          "indexed": true
        }
      ]
    }
  ]
});

export const WORK_EVENTS_ABI = /** @type {const} */ ([
  ...MagicoinPool.abi, ...MagicoinJobs.abi, ...MagicoinWorkers.abi, ...MagicoinAnnotations.abi,
].filter((entry) => entry.type === "event"));
