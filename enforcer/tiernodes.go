package enforcer

// nodeChanged follows a Node change (old or cur nil: added, deleted): the
// class maps of the groups whose rules have nodes peers.
func (c *compiler) nodeChanged(old, cur *nodeRecord) {
	c.syncTiers(false)
	c.resyncConflicts()
}
