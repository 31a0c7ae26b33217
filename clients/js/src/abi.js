// The published ABI of the system addresses (docs/abi/magicoin.json): eth_call views, read with viem's readContract.
// test/abi.test.js checks every entry here against that file, so the two cannot drift apart.

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
    }
  ]
});
