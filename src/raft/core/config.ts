// Cluster membership: voters and learners. Changes are applied one at a time,
// when their log entry is applied (etcd's apply-time activation; hard case 9).
import { type ConfChange, ConfChangeType, type ConfState } from "../../gen/raft/v1/raft.js";

export class Configuration {
  constructor(
    readonly voters: ReadonlySet<number> = new Set(),
    readonly learners: ReadonlySet<number> = new Set(),
  ) {}

  static fromConfState(cs: ConfState | undefined): Configuration {
    return new Configuration(new Set(cs?.voters ?? []), new Set(cs?.learners ?? []));
  }

  toConfState(): ConfState {
    return {
      voters: [...this.voters].sort((a, b) => a - b),
      learners: [...this.learners].sort((a, b) => a - b),
    };
  }

  isVoter(id: number): boolean {
    return this.voters.has(id);
  }

  isMember(id: number): boolean {
    return this.voters.has(id) || this.learners.has(id);
  }

  members(): number[] {
    return [...this.voters, ...this.learners];
  }

  /** Why a change cannot be proposed against this configuration, or undefined. */
  validate(cc: ConfChange): string | undefined {
    switch (cc.type) {
      case ConfChangeType.CONF_CHANGE_TYPE_ADD_LEARNER:
        return this.isMember(cc.nodeId) ? `node ${cc.nodeId} is already a member` : undefined;
      case ConfChangeType.CONF_CHANGE_TYPE_PROMOTE_VOTER:
        return this.learners.has(cc.nodeId) ? undefined : `node ${cc.nodeId} is not a learner`;
      case ConfChangeType.CONF_CHANGE_TYPE_REMOVE_NODE:
        if (!this.isMember(cc.nodeId)) return `node ${cc.nodeId} is not a member`;
        if (this.voters.size === 1 && this.voters.has(cc.nodeId)) return "cannot remove the last voter";
        return undefined;
      default:
        return `unknown configuration change type ${cc.type}`;
    }
  }

  /**
   * The configuration after a committed change. Deterministic and total: a change
   * that no longer fits (e.g. replayed) leaves the configuration as it is. A
   * promotion of a non-member adds a voter directly: that is how a new cluster's
   * bootstrap entries name its first voters.
   */
  apply(cc: ConfChange): Configuration {
    const voters = new Set(this.voters);
    const learners = new Set(this.learners);
    switch (cc.type) {
      case ConfChangeType.CONF_CHANGE_TYPE_ADD_LEARNER:
        if (!voters.has(cc.nodeId)) learners.add(cc.nodeId);
        break;
      case ConfChangeType.CONF_CHANGE_TYPE_PROMOTE_VOTER:
        learners.delete(cc.nodeId);
        voters.add(cc.nodeId);
        break;
      case ConfChangeType.CONF_CHANGE_TYPE_REMOVE_NODE:
        if (voters.size === 1 && voters.has(cc.nodeId)) break;
        voters.delete(cc.nodeId);
        learners.delete(cc.nodeId);
        break;
      default:
        break;
    }
    return new Configuration(voters, learners);
  }
}
