import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decideFailover, type ObservedLease, type ObservedNode, type ObservedPod, type WatchdogObservation } from './decide.js';

const NOW = new Date('2026-12-04T12:00:00Z');
const DELAY = 30;

function secondsAgo(seconds: number): Date {
  return new Date(NOW.getTime() - seconds * 1000);
}

const pod: ObservedPod = { name: 'cas-0', uid: 'uid-1', nodeName: 'node-a', deletionTimestamp: undefined };
const notReadyFor = (seconds: number, status: 'False' | 'Unknown' = 'Unknown'): ObservedNode => ({ name: 'node-a', ready: status, readyTransitionTime: secondsAgo(seconds) });
const expiredLease: ObservedLease = { holderIdentity: 'cas-0', leaseDurationSeconds: 15, unchangedForSeconds: 15 };

interface Case {
  name: string;
  observation: Partial<WatchdogObservation>;
  action: 'wait' | 'delete-pod';
  reason: RegExp;
}

const cases: Case[] = [
  { name: 'no pod', observation: { pod: undefined }, action: 'wait', reason: /no primary pod exists/ },
  { name: 'pod not scheduled', observation: { pod: { ...pod, nodeName: undefined } }, action: 'wait', reason: /not scheduled/ },
  { name: 'node object missing', observation: { node: undefined }, action: 'wait', reason: /not visible/ },
  { name: 'node ready', observation: { node: { name: 'node-a', ready: 'True', readyTransitionTime: secondsAgo(3600) } }, action: 'wait', reason: /is Ready/ },
  { name: 'not ready without transition time', observation: { node: { name: 'node-a', ready: 'Unknown', readyTransitionTime: undefined } }, action: 'wait', reason: /no transition time/ },
  { name: 'not ready shorter than the delay', observation: { node: notReadyFor(DELAY - 1) }, action: 'wait', reason: /NotReady for 29 s of the 30 s delay/ },
  { name: 'lease first seen', observation: { lease: { ...expiredLease, unchangedForSeconds: undefined } }, action: 'wait', reason: /observing whether it is still renewed/ },
  { name: 'lease still renewed', observation: { lease: { ...expiredLease, unchangedForSeconds: 14.9 } }, action: 'wait', reason: /within its 15 s period/ },
  { name: 'delay reached, lease expired', observation: {}, action: 'delete-pod', reason: /NotReady for 30 s \(delay 30 s\) and the primary lease of cas-0 expired/ },
  { name: 'Ready False counts as not ready', observation: { node: notReadyFor(DELAY, 'False') }, action: 'delete-pod', reason: /NotReady/ },
  { name: 'no lease object', observation: { lease: undefined }, action: 'delete-pod', reason: /no instance holds the primary lease/ },
  { name: 'released lease', observation: { lease: { holderIdentity: undefined, leaseDurationSeconds: 15, unchangedForSeconds: 0 } }, action: 'delete-pod', reason: /no instance holds/ },
  { name: 'pod already terminating', observation: { pod: { ...pod, deletionTimestamp: secondsAgo(60) } }, action: 'delete-pod', reason: /expired/ },
];

describe('decideFailover', () => {
  for (const entry of cases) {
    it(entry.name, () => {
      const observation: WatchdogObservation = { now: NOW, pod, node: notReadyFor(DELAY), lease: expiredLease, ...entry.observation };
      const decision = decideFailover(observation, { notReadyDelaySeconds: DELAY });
      assert.equal(decision.action, entry.action, decision.reason);
      assert.match(decision.reason, entry.reason);
      if (decision.action === 'delete-pod') {
        assert.equal(decision.pod, 'cas-0');
        assert.equal(decision.uid, (observation.pod ?? pod).uid);
        assert.equal(decision.node, 'node-a');
      }
    });
  }
});
